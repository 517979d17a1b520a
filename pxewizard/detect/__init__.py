"""What the host has: interfaces, DHCP servers on the wire, port holders, RAM."""

