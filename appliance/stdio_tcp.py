#!/usr/bin/env python3
"""stdio_tcp.py PORT — joins stdin/stdout to 127.0.0.1:PORT.

qemu's user network runs it once for each connection the guest opens to a
`guestfwd` address (`guestfwd=tcp:169.254.169.254:80-cmd:...`): that is how
image_test.py puts its loopback IMDS peer (tests/peers/imds.py) where EC2's
metadata service is, for the appliance's first boot to find."""
import os
import selectors
import socket
import sys


def main():
    s = socket.create_connection(("127.0.0.1", int(sys.argv[1])), timeout=10)
    s.settimeout(None)
    sel = selectors.DefaultSelector()
    sel.register(0, selectors.EVENT_READ)
    sel.register(s, selectors.EVENT_READ)
    open_in = True
    while True:
        for key, _ in sel.select(timeout=60):
            if key.fileobj == 0:
                data = os.read(0, 65536)
                if not data:
                    sel.unregister(0)
                    open_in = False
                    s.shutdown(socket.SHUT_WR)
                else:
                    s.sendall(data)
            else:
                data = s.recv(65536)
                if not data:
                    return
                os.write(1, data)
        if not open_in and not sel.get_map():
            return


if __name__ == "__main__":
    try:
        main()
    except (OSError, KeyboardInterrupt):
        pass
