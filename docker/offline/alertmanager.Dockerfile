# selfheal/alertmanager: Debian's prometheus-alertmanager binary, FROM scratch.
FROM scratch
COPY rootfs/ /
COPY --chown=65534:65534 data/ /alertmanager/
USER 65534:65534
EXPOSE 9093
VOLUME ["/alertmanager"]
HEALTHCHECK --interval=10s --timeout=3s --start-period=10s --retries=3 \
    CMD ["wget", "-q", "-O", "/dev/null", "http://127.0.0.1:9093/-/healthy"]
ENTRYPOINT ["/bin/alertmanager"]
CMD ["--config.file=/etc/alertmanager/alertmanager.yml", "--storage.path=/alertmanager"]
