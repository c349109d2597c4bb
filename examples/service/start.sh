# Topsail's example service: answers its version on / and "ok" on /health. A request to
# /cgi-bin/fail makes /health fail from then on (to try an unhealthy deploy on a live server
# group); HEALTHY=false in /release (or TOPSAIL_EXAMPLE_HEALTHY=false) starts it failing.
# Runs on busybox alone: no other shell, no libc in the image.
b=/bin/busybox
# The release the image was built as (VERSION, HEALTHY); the container's environment wins.
[ -f /release ] && . /release
VERSION=${TOPSAIL_EXAMPLE_VERSION:-$VERSION}
HEALTHY=${TOPSAIL_EXAMPLE_HEALTHY:-$HEALTHY}
$b mkdir -p /www/cgi-bin
printf '%s' "${VERSION:-dev}" > /www/index.html
if [ "${HEALTHY:-true}" = "true" ]; then printf 'ok' > /www/health; fi
printf '#!/bin/busybox sh\n/bin/busybox rm -f /www/health\nprintf "Content-Type: text/plain\\r\\n\\r\\nfailing\\n"\n' > /www/cgi-bin/fail
$b chmod 755 /www/cgi-bin/fail
# In the foreground of a shell that stops it on SIGTERM (a process 1 without a handler ignores it).
$b httpd -f -p "${PORT:-8080}" -h /www &
server=$!
trap '$b kill $server; exit 0' TERM INT
wait $server
