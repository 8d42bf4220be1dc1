# selfheal/node-exporter: Debian's prometheus-node-exporter binary, FROM scratch. Compose mounts
# the host's /proc, /sys and / read-only and points the --path.* flags at them.
FROM scratch
COPY rootfs/ /
USER 65534:65534
EXPOSE 9100
HEALTHCHECK --interval=10s --timeout=3s --start-period=5s --retries=3 \
    CMD ["wget", "-q", "-O", "/dev/null", "http://127.0.0.1:9100/"]
ENTRYPOINT ["/bin/node_exporter"]
