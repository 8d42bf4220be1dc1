# selfheal/alertmanager: Debian's prometheus-alertmanager binary, FROM scratch.
FROM scratch
COPY rootfs/ /
COPY --chown=10001:10001 data/ /alertmanager/
USER 10001:10001
EXPOSE 9093
VOLUME ["/alertmanager"]
HEALTHCHECK --interval=10s --timeout=3s --start-period=10s --retries=3 \
    CMD ["/bin/healthcheck", "http://127.0.0.1:9093/-/healthy"]
ENTRYPOINT ["/bin/alertmanager"]
CMD ["--config.file=/etc/alertmanager/alertmanager.yml", "--storage.path=/alertmanager"]
