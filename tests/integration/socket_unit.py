# SPDX-License-Identifier: Apache-2.0
"""What systemd does for a socket unit (Accept=no) and its service, where the test machine's PID 1 is not
systemd: listen on 127.0.0.1:0 (the port printed on the first line), and whenever a connection waits and
the service is not running, start COMMAND with the listening socket as fd 3, LISTEN_FDS=1 and LISTEN_PID
its pid (sd_listen_fds(3)); connections that arrive while it starts wait in the backlog, as with systemd.
Prints "start N" and "exit N STATUS" as the service starts and ends; stops it on SIGTERM.

usage: socket_unit.py COMMAND [ARG...]
"""
import os
import select
import signal
import socket
import sys


def main() -> int:
    sock = socket.socket()
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", 0))
    sock.listen(128)
    print(sock.getsockname()[1], flush=True)
    child = 0
    starts = 0

    def stop(*_):
        if child:
            os.kill(child, signal.SIGTERM)
            os.waitpid(child, 0)
        sys.exit(0)

    signal.signal(signal.SIGTERM, stop)
    while True:
        if child:
            pid, status = os.waitpid(child, 0)
            print(f"exit {starts} {os.waitstatus_to_exitcode(status)}", flush=True)
            child = 0
        select.select([sock], [], [])  # a connection waits
        starts += 1
        child = os.fork()
        if child == 0:
            os.dup2(sock.fileno(), 3)
            os.set_inheritable(3, True)
            os.environ.update(LISTEN_FDS="1", LISTEN_PID=str(os.getpid()))
            os.execvp(sys.argv[1], sys.argv[1:])
        print(f"start {starts}", flush=True)


if __name__ == "__main__":
    sys.exit(main())
