"""libgridos from Python through ctypes: the ABI is usable from another language.

Usage: ctypes_smoke.py LIBGRIDOS_SO SCRATCH_DIR. Copies a file with gridos_copy (the copy
engine) and gridos_file_copy (gridos-io), checks the bytes, and checks that a failed call
returns its code with a message. Exit status 0 when every check held.
"""
import ctypes
import os
import sys

lib = ctypes.CDLL(sys.argv[1])
scratch = sys.argv[2]

lib.gridos_init.restype = ctypes.c_uint32
lib.gridos_version.restype = ctypes.c_char_p
lib.gridos_last_error_message.restype = ctypes.c_char_p
lib.gridos_copy.restype = ctypes.c_uint32
lib.gridos_copy.argtypes = [ctypes.c_char_p, ctypes.c_char_p, ctypes.c_void_p,
                            ctypes.c_void_p, ctypes.c_void_p]
lib.gridos_file_copy.restype = ctypes.c_uint32
lib.gridos_file_copy.argtypes = [ctypes.c_char_p, ctypes.c_char_p,
                                 ctypes.POINTER(ctypes.c_uint64)]

GRIDOS_OK, GRIDOS_ERR_NOT_FOUND = 0, 201

assert lib.gridos_init() == GRIDOS_OK
print("libgridos", lib.gridos_version().decode())

data = os.urandom(3 * 1024 * 1024 + 17)
src = os.path.join(scratch, "src.bin")
with open(src, "wb") as f:
    f.write(data)

dst = os.path.join(scratch, "copied.bin")
r = lib.gridos_copy(src.encode(), dst.encode(), None, None, None)
assert r == GRIDOS_OK, (r, lib.gridos_last_error_message())
with open(dst, "rb") as f:
    assert f.read() == data, "gridos_copy: the bytes differ"

dst2 = os.path.join(scratch, "copied2.bin")
n = ctypes.c_uint64(0)
r = lib.gridos_file_copy(src.encode(), dst2.encode(), ctypes.byref(n))
assert r == GRIDOS_OK, (r, lib.gridos_last_error_message())
assert n.value == len(data), n.value
with open(dst2, "rb") as f:
    assert f.read() == data, "gridos_file_copy: the bytes differ"

missing = os.path.join(scratch, "missing.bin").encode()
r = lib.gridos_copy(missing, dst.encode(), None, None, None)
assert r == GRIDOS_ERR_NOT_FOUND, r
message = lib.gridos_last_error_message().decode()
assert "missing.bin" in message, message
print("ctypes ok:", message)
