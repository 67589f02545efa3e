from spacehub_runner.runtimes.loopback import outside_listeners

HEADER = "  sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode\n"
TCP = HEADER + "".join([
    "   0: 0100007F:1F40 00000000:0000 0A 00000000:00000000 00:00000000 00000000  1000        0 111 1\n",
    "   1: 00000000:1CB4 00000000:0000 0A 00000000:00000000 00:00000000 00000000  1000        0 222 1\n",
    "   2: 0101A8C0:0050 00000000:0000 0A 00000000:00000000 00:00000000 00000000  1000        0 333 1\n",
    "   3: 00000000:1CB5 0100007F:9999 01 00000000:00000000 00:00000000 00000000  1000        0 444 1\n",
])
TCP6 = HEADER + "".join([
    "   0: 00000000000000000000000001000000:1CB4 00000000000000000000000000000000:0000 0A 00000000:00000000 "
    "00:00000000 00000000  1000        0 555 1\n",
    "   1: 00000000000000000000000000000000:1CB6 00000000000000000000000000000000:0000 0A 00000000:00000000 "
    "00:00000000 00000000  1000        0 666 1\n",
    "   2: 0000000000000000FFFF00000100007F:1CB7 00000000000000000000000000000000:0000 0A 00000000:00000000 "
    "00:00000000 00000000  1000        0 777 1\n",
])


def test_listeners_beyond_loopback_are_found(tmp_path):
    (tmp_path / "net").mkdir()
    (tmp_path / "net" / "tcp").write_text(TCP)
    (tmp_path / "net" / "tcp6").write_text(TCP6)
    # 127.0.0.1, ::1 and ::ffff:127.0.0.1 are loopback; a connected (not listening) socket is not a listener.
    assert outside_listeners(tmp_path) == {222: "0.0.0.0:7348", 333: "192.168.1.1:80", 666: "[::]:7350"}
