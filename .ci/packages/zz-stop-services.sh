# Package installs may start daemons (nginx) on the host: the tests run their own, in namespaces.
# Stop only what the install started, by the PID files those packages write.
for pidfile in /run/nginx.pid /run/dhcpd.pid /run/kea/kea-dhcp4.kea-dhcp4.pid /run/nbd-server.pid /run/radvd/radvd.pid; do
    if [ -s "$pidfile" ]; then
        kill "$(cat "$pidfile")" 2>/dev/null || true
    fi
done
exit 0
