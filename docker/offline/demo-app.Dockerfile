# selfheal/demo-app, assembled offline by docker/offline/build.sh (see docker/Dockerfile for
# the online build). The context's rootfs holds the binary, its libraries and /etc/passwd.
FROM scratch
COPY rootfs/ /
USER 10001:10001
ENV PORT=8080
EXPOSE 8080
HEALTHCHECK --interval=10s --timeout=3s --start-period=5s --retries=3 \
    CMD ["/usr/local/bin/demo-app", "healthcheck"]
ENTRYPOINT ["/usr/local/bin/demo-app"]
