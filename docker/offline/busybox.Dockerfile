# selfheal/busybox, assembled offline by docker/offline/build.sh from Debian's busybox-static:
# an image with nothing of this project inside, for tests and benchmarks. The rootfs holds
# /bin/busybox, a symlink per applet (sh, httpd, wget, sleep, kill, ...), /www with index.html
# and health, /tmp and /etc/passwd. No HEALTHCHECK: tests add their own (wget of /health).
FROM scratch
COPY rootfs/ /
ENV PATH=/bin
USER 10001:10001
EXPOSE 8080
CMD ["/bin/httpd", "-f", "-v", "-p", "8080", "-h", "/www"]
