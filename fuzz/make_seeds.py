#!/usr/bin/env python3
"""Writes the seed corpus (fuzz/seeds/TARGET/*) for every target. Run from fuzz/; the seeds
are committed, so this only needs to run again when a format changes."""
import json, os, ssl, struct

def put(target, name, data):
    d = os.path.join("seeds", target)
    os.makedirs(d, exist_ok=True)
    if isinstance(data, str):
        data = data.encode()
    with open(os.path.join(d, name), "wb") as f:
        f.write(data)

for i, c in enumerate([
    "USER alice\r\n", "PASS secret\r\n", "AUTH TLS\r\n", "PBSZ 0\r\n", "PROT P\r\n",
    "EPSV\r\n", "PORT 127,0,0,1,4,1\r\n", "EPRT |2|::1|5000|\r\n", "RETR /a b\r\n",
    "ERET P 0 1000 /data/big\r\n", "ESTO A 100 /f\r\n", "REST 0-100,200-300\r\n",
    "OPTS RETR Parallelism=4,4,4;\r\n", "SPOR 127,0,0,1,4,1 127,0,0,1,4,2\r\n",
    "CKSM SHA256 0 -1 /f\r\n", "MLSD /\r\n", "MFMT 20260101000000 /f\r\n", "SITE CHMOD 644 f\r\n",
    "SSCN ON\r\n", "DCAU N\r\n", "SBUF 4194304\r\n", "MODE E\r\n", "TYPE A N\r\n",
]):
    put("parse_command", f"cmd{i}", c)

put("session", "login_list", b"\x04TYPE I\r\nEPSV\r\nMLSD\r\nQUIT\r\n")
put("session", "grid", b"\x05MODE E\r\nOPTS RETR Parallelism=2,2,2;\r\nSPAS\r\nRETR f\r\nABOR\r\n")
put("session", "tls", b"\x01AUTH TLS\r\nPBSZ 0\r\nPROT P\r\nUSER u\r\nPASS p\r\nPASV\r\nSTOR x\r\n")
put("session", "anon", b"\x02USER anonymous\r\nPASS a@b\r\nCWD /\r\nSIZE f\r\nREST 10\r\nRETR f\r\n")

replies = {
    "feat": "211-Features:\r\n MDTM\r\n MLST type*;size*;modify*;\r\n AUTH TLS\r\n PBSZ\r\n PROT\r\n PARALLEL\r\n CKSM MD5,SHA256\r\n211 End\r\n",
    "pasv": "227 Entering Passive Mode (127,0,0,1,19,137).\r\n",
    "epsv": "229 Entering Extended Passive Mode (|||5000|)\r\n",
    "spas": "229-Entering Striped Passive Mode\r\n 127,0,0,1,19,137\r\n 127,0,0,1,19,138\r\n229 End\r\n",
    "perf": "112-Perf Marker\r\n Timestamp:  1111111111.1\r\n Stripe Index: 0\r\n Stripe Bytes Transferred: 4096\r\n Total Stripe Count: 1\r\n112 End.\r\n",
    "range": "111 Range Marker 0-1000,2000-3000\r\n",
    "greet": "220 ready\r\n331 pass\r\n230 ok\r\n150 go\r\n226 done\r\n",
}
for k, v in replies.items():
    put("reply", k, b"\x10" + v.encode())

put("listing", "mlsd", "type=cdir;modify=20260101000000;perm=el; .\r\ntype=file;size=42;modify=20260101120000.123;perm=r;UNIX.mode=0644; a file\r\ntype=dir;modify=20250101000000; sub\r\n")
put("listing", "addr", "127,0,0,1,4,1\n|2|::1|5000|\n|1|127.0.0.1|21|\n10.0.0.0/8,::1\n")

def hdr(desc, count, off):
    return struct.pack(">BQQ", desc, count, off)
s = b"\x00"
s += b"\x00" + hdr(0, 100, 0) + b"\x01" + hdr(0, 100, 100) + b"\x00" + hdr(0x08, 0, 0)
s += b"\x01" + hdr(0x40, 0, 2)
put("mode_e", "two_streams", s)
put("mode_e", "restart", b"\x05" + b"\x00" + hdr(0x10, 10, 0) + b"\x00" + hdr(0x48, 0, 1))

def frame(src, dst, tag, payload):
    b = bytes([1]) + struct.pack(">H", len(src)) + src + struct.pack(">H", len(dst)) + dst
    return b + struct.pack(">I", tag) + payload
def env(obj, blob=b""):
    j = json.dumps(obj).encode()
    return struct.pack(">I", len(j)) + j + blob
put("node_frame", "frame", frame(b"n1.1.0", b"n2.3.4", 7, b"hello"))
put("node_frame", "hello", env({"id": 1, "body": {"op": "hello"}}))
put("node_frame", "spawn", env({"id": 2, "body": {"op": "spawn", "spec": {"argv": ["/bin/true"]}}}))
put("node_frame", "in_frame", frame(b"n1.1.0", b"n1.1.1", 0xFFFF0001, env({"id": 3, "body": {"op": "ping"}})))

put("config", "toml", '[ftp]\ndocroot = "/srv"\nlisten = "0.0.0.0:21"\ntls = "required"\ntls_cert = "/etc/c.pem"\nthird_party_hosts = ["10.0.0.0/8", "::1"]\npasv_ports = "50000-50100"\nidle_timeout = 300\n')
put("config", "io", "[io]\nsplice_pipe = 1048576\n")
put("config", "passwd", "alice:$argon2id$v=19$m=19456,t=2,p=1$c2FsdHNhbHQ$aGFzaGhhc2hoYXNoaGFzaA\n")
put("config", "gridmap", '"/C=XX/O=Grid/CN=Jane Doe" jdoe,jane\n/C=XX/O=Grid/CN=bob bob\n# c\n')

for i, u in enumerate(["ftp://user:pw@host:2121/dir/f%20x", "gridftp://h/~/data", "ftp://h/%2Fetc/f",
                       "https://example.invalid/a?b", "file:///tmp/x", "/local/path", "ftps://h/f",
                       "ftpes://[::1]:21/a", "gridftp://h:2811/a/b/"]):
    put("url", f"url{i}", u)

def client_hello(maxv):
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    ctx.maximum_version = maxv
    inc, out = ssl.MemoryBIO(), ssl.MemoryBIO()
    o = ctx.wrap_bio(inc, out, server_hostname="localhost")
    try:
        o.do_handshake()
    except ssl.SSLWantReadError:
        pass
    return out.read()
put("tls_server", "hello13", b"\x00" + client_hello(ssl.TLSVersion.TLSv1_3))
put("tls_server", "hello12", b"\x00" + client_hello(ssl.TLSVersion.TLSv1_2))
