# selfheal/watchdog, assembled offline by docker/offline/build.sh. It needs the Docker socket
# (mounted by compose) and a group that may use it (compose `group_add: [DOCKER_GID]`).
FROM scratch
COPY rootfs/ /
COPY --chown=10001:10001 state/ /var/lib/selfheal/
ENV PATH=/usr/local/bin
USER 10001:10001
EXPOSE 9100
VOLUME ["/var/lib/selfheal"]
# Read by `selfheal watch` and by `docker exec ... selfheal incidents` alike.
ENV SELFHEAL_LISTEN=0.0.0.0:9100 SELFHEAL_STATE_DIR=/var/lib/selfheal
# glibc raises its mmap threshold each time a large block is freed, so later large buffers
# stay in the heap; fixed at its default, they go back to the kernel when freed: about 1 MiB
# less RSS with 100 containers watched (BENCHMARKS.md, "5: footprint").
ENV MALLOC_MMAP_THRESHOLD_=131072
HEALTHCHECK --interval=10s --timeout=3s --start-period=5s --retries=3 \
    CMD ["/usr/local/bin/selfheal", "healthcheck"]
ENTRYPOINT ["/usr/local/bin/selfheal", "watch"]
