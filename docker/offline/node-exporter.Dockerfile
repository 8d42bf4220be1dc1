# selfheal/node-exporter: Debian's prometheus-node-exporter binary, FROM scratch. Compose mounts
# the host's /proc, /sys and / read-only and points the --path.* flags at them.
FROM scratch
COPY rootfs/ /
USER 10001:10001
EXPOSE 9100
HEALTHCHECK --interval=10s --timeout=3s --start-period=5s --retries=3 \
    CMD ["/bin/healthcheck", "http://127.0.0.1:9100/"]
ENTRYPOINT ["/bin/node_exporter"]
