#!/usr/bin/python3
"""Linux TCP clients for the interop tests. One mode per run, one JSON object
on stdout. Every mode is bounded in time (--timeout) and in bytes or
connections; on a timeout the JSON says so ("timed_out": true) instead of
hanging, and the caller's assertions report it.

Modes:
  echo     send --mib MiB of random bytes while reading the echo, half-close,
           read to EOF; compare SHA-256 (and the first differing offset).
  discard  send --mib MiB, half-close, expect no byte back and a clean EOF.
  many     --conns concurrent connections, each sends one message, checks
           its echo byte for byte, half-closes and reads to a clean EOF.
  reset    fill an echo connection both ways, then close it with SO_LINGER
           {1, 0} (a RST) while data is in flight; then check that a new
           connection still gets its echo.
  http     raw HTTP/1.1: a pipelined HEAD + GET (Connection: close) on one
           connection; the exact response bytes are returned for checking.
"""
import argparse, errno, hashlib, json, os, selectors, socket, struct, sys, time

ap = argparse.ArgumentParser()
ap.add_argument("mode", choices=["echo", "discard", "many", "reset", "http"])
ap.add_argument("--dst", required=True)
ap.add_argument("--port", type=int, default=7)
ap.add_argument("--mib", type=float, default=8.0)
ap.add_argument("--conns", type=int, default=500)
ap.add_argument("--timeout", type=float, default=20.0)
args = ap.parse_args()

CHUNK = 64 * 1024


def emit(result):
    json.dump(result, sys.stdout)
    print()
    sys.exit(0)


def connect(timeout):
    s = socket.create_connection((args.dst, args.port), timeout=timeout)
    s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    return s


def stream(send_bytes):
    """Send `send_bytes` while reading; half-close; read to EOF. Returns the
    received bytes and how the connection ended."""
    start = time.monotonic()
    deadline = start + args.timeout
    s = connect(min(5.0, args.timeout))
    s.setblocking(False)
    sel = selectors.DefaultSelector()
    sel.register(s, selectors.EVENT_READ | selectors.EVENT_WRITE)
    view = memoryview(send_bytes)
    sent, received = 0, bytearray()
    shut, eof, reset, timed_out = False, False, False, False
    while not eof:
        now = time.monotonic()
        if now >= deadline:
            timed_out = True
            break
        for key, mask in sel.select(min(0.2, deadline - now)):
            if mask & selectors.EVENT_READ:
                try:
                    data = s.recv(1 << 20)
                except BlockingIOError:
                    data = None
                except ConnectionResetError:
                    reset, eof = True, True
                    break
                if data == b"":
                    eof = True
                    break
                if data:
                    received += data
            if mask & selectors.EVENT_WRITE and not shut:
                try:
                    sent += s.send(view[sent:sent + CHUNK])
                except BlockingIOError:
                    pass
                except (ConnectionResetError, BrokenPipeError):
                    reset, eof = True, True
                    break
                if sent == len(send_bytes):
                    s.shutdown(socket.SHUT_WR)
                    shut = True
                    sel.modify(s, selectors.EVENT_READ)
    seconds = time.monotonic() - start
    # struct tcp_info: eight u8 fields, then u32 rto, ato, snd_mss, rcv_mss.
    # rcv_mss is the largest segment the peer (shardnet) sent us, so far as
    # Linux measured it; snd_mss the largest we send it.
    try:
        info = s.getsockopt(socket.IPPROTO_TCP, socket.TCP_INFO, 104)
        snd_mss, rcv_mss = struct.unpack_from("II", info, 16)
    except OSError:
        snd_mss, rcv_mss = 0, 0
    s.close()
    return {
        "snd_mss": snd_mss,
        "rcv_mss": rcv_mss,
        "sent": sent,
        "received": len(received),
        "eof": eof and not reset,
        "reset": reset,
        "timed_out": timed_out,
        "seconds": round(seconds, 3),
    }, bytes(received)


if args.mode == "echo":
    data = os.urandom(int(args.mib * (1 << 20)))
    result, back = stream(data)
    result["sha256_sent"] = hashlib.sha256(data).hexdigest()
    result["sha256_received"] = hashlib.sha256(back).hexdigest()
    result["match"] = back == data
    if not result["match"]:
        limit = min(len(back), len(data))
        result["first_difference"] = next(
            (i for i in range(limit) if back[i] != data[i]), limit)
    # Payload rate: bytes echoed back per second (each byte crossed twice).
    result["mib_per_s"] = round(len(back) / (1 << 20) / max(result["seconds"], 1e-6), 2)
    emit(result)

if args.mode == "discard":
    data = os.urandom(int(args.mib * (1 << 20)))
    result, back = stream(data)
    result["mib_per_s"] = round(result["sent"] / (1 << 20) / max(result["seconds"], 1e-6), 2)
    emit(result)

if args.mode == "many":
    start = time.monotonic()
    deadline = start + args.timeout
    sel = selectors.DefaultSelector()
    conns = {}
    refused = 0
    for i in range(args.conns):
        s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        s.setblocking(False)
        err = s.connect_ex((args.dst, args.port))
        if err not in (0, errno.EINPROGRESS):
            refused += 1
            s.close()
            continue
        msg = (f"connection {i} ".encode() + os.urandom(16).hex().encode()) * (1 + i % 7)
        conns[s.fileno()] = {"sock": s, "msg": msg, "sent": 0, "got": bytearray(),
                             "phase": "connect"}
        sel.register(s, selectors.EVENT_WRITE)
    ok = mismatched = errors = unclean = 0
    connected = 0
    open_now = len(conns)
    while open_now and time.monotonic() < deadline:
        for key, mask in sel.select(0.2):
            c = conns[key.fd]
            s = c["sock"]
            try:
                if c["phase"] == "connect":
                    err = s.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR)
                    if err:
                        raise OSError(err, os.strerror(err))
                    connected += 1
                    c["phase"] = "send"
                if c["phase"] == "send":
                    c["sent"] += s.send(c["msg"][c["sent"]:])
                    if c["sent"] == len(c["msg"]):
                        c["phase"] = "echo"
                        sel.modify(s, selectors.EVENT_READ)
                    continue
                data = s.recv(65536)
                if c["phase"] == "echo":
                    if data == b"":
                        raise OSError("EOF before the whole echo")
                    c["got"] += data
                    if len(c["got"]) >= len(c["msg"]):
                        if bytes(c["got"]) != c["msg"]:
                            mismatched += 1
                            c["phase"] = "done"
                        else:
                            s.shutdown(socket.SHUT_WR)
                            c["phase"] = "eof"
                            c["got"] = bytearray()
                elif c["phase"] == "eof":
                    if data == b"":
                        ok += 1
                        c["phase"] = "done"
                    else:
                        unclean += 1
                        c["phase"] = "done"
            except BlockingIOError:
                continue
            except OSError:
                errors += 1
                c["phase"] = "done"
            if c["phase"] == "done":
                sel.unregister(s)
                s.close()
                open_now -= 1
    pending = [c["phase"] for c in conns.values() if c["phase"] != "done"]
    for c in conns.values():
        if c["phase"] != "done":
            c["sock"].close()
    emit({"conns": args.conns, "refused": refused, "connected": connected, "ok": ok,
          "mismatched": mismatched, "errors": errors, "unclean": unclean,
          "unfinished": len(pending),
          "unfinished_phases": sorted(set(pending)),
          "timed_out": bool(pending),
          "seconds": round(time.monotonic() - start, 3)})

if args.mode == "reset":
    start = time.monotonic()
    s = connect(5.0)
    s.setblocking(False)
    data = os.urandom(4 << 20)
    sent = 0
    fill_deadline = start + min(5.0, args.timeout / 2)
    # Send without reading until the window closes (the echo fills our receive
    # buffer, then shardnet's buffers) or the time is up.
    stalled_since = None
    while sent < len(data) and time.monotonic() < fill_deadline:
        try:
            sent += s.send(data[sent:sent + CHUNK])
            stalled_since = None
        except BlockingIOError:
            stalled_since = stalled_since or time.monotonic()
            if time.monotonic() - stalled_since > 0.5:
                break
            time.sleep(0.01)
    try:
        unread = len(s.recv(1 << 16))  # leaves more unread: still in flight
    except BlockingIOError:
        unread = 0
    s.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    s.close()  # RST, with data in flight both ways
    time.sleep(0.3)
    # The stack keeps serving: a fresh connection gets its echo.
    s = connect(5.0)
    msg = b"after the reset " + os.urandom(32).hex().encode()
    s.sendall(msg)
    s.shutdown(socket.SHUT_WR)
    got = b""
    s.settimeout(max(1.0, args.timeout - (time.monotonic() - start)))
    try:
        while True:
            d = s.recv(65536)
            if not d:
                break
            got += d
        after_ok = got == msg
        after_error = None
    except OSError as e:
        after_ok, after_error = False, str(e)
    s.close()
    emit({"sent_before_reset": sent, "read_before_reset": unread,
          "echo_after_reset": after_ok, "error_after_reset": after_error,
          "seconds": round(time.monotonic() - start, 3)})

if args.mode == "http":
    s = connect(5.0)
    s.sendall(b"HEAD / HTTP/1.1\r\nHost: interop\r\n\r\n"
              b"GET / HTTP/1.1\r\nHost: interop\r\nConnection: close\r\n\r\n")
    s.settimeout(args.timeout)
    got, eof = b"", False
    try:
        while True:
            d = s.recv(65536)
            if not d:
                eof = True
                break
            got += d
    except OSError:
        pass
    s.close()
    emit({"response": got.decode("latin-1"), "eof": eof})
