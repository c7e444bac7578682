"""A FUSE filesystem that can lose power, in the style of LazyFS (for the power-cut tests).

Everything lives in memory. A write reaches the "disk" only when it is fsynced: a file's bytes on fsync of the
file, a folder's entries (created, renamed, removed names) on fsync of the folder, as POSIX promises and no more.
`cut` is the power cut: from then on nothing more reaches the disk; the server then saves what is on the disk
and unmounts. Mounting that image again is the machine coming back: every file holds what was last fsynced,
every folder the names it had at its last fsync; the rest is gone. With `metadata_sync` (LazyFS's default)
names are written at once (create, rename, unlink reach the disk when they return) and only bytes wait for an
fsync: the two orders in which a real disk may keep a rename or an unlink and lose the data before it.

    server = LazyFS.mount(mountpoint, image)     # a subprocess serving `mountpoint`
    ...                                          # write, fsync, run the daemon on it
    server.cut(); kill the writers; server.unmount()
    server = LazyFS.mount(mountpoint, image)     # power back

Run as a script it is the server: `python lazyfs.py MOUNTPOINT IMAGE CONTROL_SOCKET [strict|metadata_sync]`.
"""

from __future__ import annotations

import errno
import os
import pickle
import socket
import stat
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path


def available() -> str:
    """'' when a LazyFS can be mounted here, else why not."""
    if not os.path.exists("/dev/fuse"):
        return "/dev/fuse is absent"
    if os.geteuid() != 0:
        return "mounting FUSE needs root here"
    try:
        import fuse  # noqa: F401  (fusepy; loads libfuse2)
    except (ImportError, OSError, EnvironmentError) as exc:
        return f"fusepy/libfuse2 not usable ({exc}); apt-get install libfuse2 fuse3; pip install fusepy"
    return ""


class Node:
    def __init__(self, is_dir: bool, mode: int) -> None:
        self.is_dir, self.mode = is_dir, mode
        self.data = bytearray()   # what a reader sees now
        self.synced = b""         # what survives a cut
        self.entries: dict[str, Node] = {}
        self.synced_entries: dict[str, Node] = {}
        self.mtime_ns = self.ctime_ns = self.atime_ns = time.time_ns()


def restore(root: Node) -> Node:
    """The tree as the disk holds it after a cut: reachable through fsynced entries, fsynced bytes."""
    seen = set()

    def walk(n: Node) -> None:
        if id(n) in seen:
            return
        seen.add(id(n))
        if n.is_dir:
            n.entries = dict(n.synced_entries)
            for child in n.entries.values():
                walk(child)
        else:
            n.data = bytearray(n.synced)

    walk(root)
    return root


def _ops():
    from fuse import FuseOSError, Operations

    class Ops(Operations):
        use_ns = True

        def __init__(self, root: Node, metadata_sync: bool) -> None:
            self.root, self.metadata_sync = root, metadata_sync
            self._mutex = threading.RLock()
            self.files: dict[int, Node] = {}
            self.next_fh = 1
            self.powered = True  # False after the cut: nothing more reaches the disk
            self.fsyncs = 0

        # -- helpers
        def _find(self, path: str) -> Node:
            n = self.root
            for part in (p for p in path.split("/") if p):
                if not n.is_dir or part not in n.entries:
                    raise FuseOSError(errno.ENOENT)
                n = n.entries[part]
            return n

        def _parent(self, path: str) -> tuple[Node, str]:
            head, _, name = path.rstrip("/").rpartition("/")
            parent = self._find(head or "/")
            if not parent.is_dir:
                raise FuseOSError(errno.ENOTDIR)
            return parent, name

        def _node(self, path: str, fh) -> Node:
            if fh and fh in self.files:
                return self.files[fh]
            return self._find(path)

        def _namespace_changed(self, *folders: Node) -> None:
            """LazyFS's default: names (create, rename, unlink) reach the disk at once, bytes only on fsync."""
            if self.metadata_sync and self.powered:
                for f in folders:
                    f.synced_entries = dict(f.entries)

        def _open(self, n: Node) -> int:
            fh, self.next_fh = self.next_fh, self.next_fh + 1
            self.files[fh] = n
            return fh

        # -- metadata
        def getattr(self, path, fh=None):
            with self._mutex:
                n = self._node(path, fh)
                nlink = 2 + sum(c.is_dir for c in n.entries.values()) if n.is_dir else 1
                return {"st_mode": n.mode, "st_nlink": nlink, "st_size": 4096 if n.is_dir else len(n.data),
                        "st_uid": os.getuid(), "st_gid": os.getgid(), "st_mtime": n.mtime_ns,
                        "st_ctime": n.ctime_ns, "st_atime": n.atime_ns}

        def access(self, path, amode):
            with self._mutex:
                self._find(path)
                return 0

        def chmod(self, path, mode):
            with self._mutex:
                n = self._find(path)
                n.mode = (n.mode & ~0o7777) | (mode & 0o7777)
                return 0

        def chown(self, path, uid, gid):
            return 0

        def utimens(self, path, times=None):
            with self._mutex:
                n = self._find(path)
                now = time.time_ns()
                n.atime_ns, n.mtime_ns = times if times else (now, now)
                return 0

        def statfs(self, path):
            return {"f_bsize": 4096, "f_frsize": 4096, "f_blocks": 1 << 24, "f_bfree": 1 << 23,
                    "f_bavail": 1 << 23, "f_files": 1 << 20, "f_ffree": 1 << 20, "f_favail": 1 << 20,
                    "f_namemax": 255}

        # -- folders
        def readdir(self, path, fh):
            with self._mutex:
                return [".", "..", *self._find(path).entries]

        def mkdir(self, path, mode):
            with self._mutex:
                parent, name = self._parent(path)
                if name in parent.entries:
                    raise FuseOSError(errno.EEXIST)
                parent.entries[name] = Node(True, stat.S_IFDIR | (mode & 0o7777))
                parent.mtime_ns = time.time_ns()
                self._namespace_changed(parent)
                return 0

        def rmdir(self, path):
            with self._mutex:
                parent, name = self._parent(path)
                n = self._find(path)
                if not n.is_dir:
                    raise FuseOSError(errno.ENOTDIR)
                if n.entries:
                    raise FuseOSError(errno.ENOTEMPTY)
                del parent.entries[name]
                self._namespace_changed(parent)
                return 0

        def unlink(self, path):
            with self._mutex:
                parent, name = self._parent(path)
                if name not in parent.entries:
                    raise FuseOSError(errno.ENOENT)
                if parent.entries[name].is_dir:
                    raise FuseOSError(errno.EISDIR)
                del parent.entries[name]
                parent.mtime_ns = time.time_ns()
                self._namespace_changed(parent)
                return 0

        def rename(self, old, new):
            with self._mutex:
                op, oname = self._parent(old)
                np_, nname = self._parent(new)
                if oname not in op.entries:
                    raise FuseOSError(errno.ENOENT)
                n = op.entries[oname]
                target = np_.entries.get(nname)
                if target is not None and target.is_dir:
                    if not n.is_dir:
                        raise FuseOSError(errno.EISDIR)
                    if target.entries:
                        raise FuseOSError(errno.ENOTEMPTY)
                del op.entries[oname]
                np_.entries[nname] = n
                op.mtime_ns = np_.mtime_ns = time.time_ns()
                self._namespace_changed(op, np_)
                return 0

        def fsyncdir(self, path, datasync, fh):
            with self._mutex:
                n = self._find(path)
                if self.powered:
                    n.synced_entries = dict(n.entries)
                    self.fsyncs += 1
                return 0

        # -- files
        def create(self, path, mode, fi=None):
            with self._mutex:
                parent, name = self._parent(path)
                n = parent.entries.get(name)
                if n is None:
                    n = parent.entries[name] = Node(False, stat.S_IFREG | (mode & 0o7777))
                    parent.mtime_ns = time.time_ns()
                    self._namespace_changed(parent)
                return self._open(n)

        def open(self, path, flags):
            with self._mutex:
                return self._open(self._find(path))

        def release(self, path, fh):
            with self._mutex:
                self.files.pop(fh, None)
                return 0

        def flush(self, path, fh):
            return 0

        def read(self, path, size, offset, fh):
            with self._mutex:
                return bytes(self._node(path, fh).data[offset:offset + size])

        def write(self, path, data, offset, fh):
            with self._mutex:
                n = self._node(path, fh)
                if offset > len(n.data):
                    n.data.extend(b"\0" * (offset - len(n.data)))
                n.data[offset:offset + len(data)] = data
                n.mtime_ns = time.time_ns()
                return len(data)

        def truncate(self, path, length, fh=None):
            with self._mutex:
                n = self._node(path, fh)
                if length < len(n.data):
                    del n.data[length:]
                else:
                    n.data.extend(b"\0" * (length - len(n.data)))
                n.mtime_ns = time.time_ns()
                return 0

        def fsync(self, path, datasync, fh):
            with self._mutex:
                n = self._node(path, fh)
                if self.powered:
                    n.synced = bytes(n.data)
                    self.fsyncs += 1
                return 0

        # -- the power switch
        def cut(self) -> None:
            with self._mutex:
                self.powered = False

    return Ops


class LazyFS:
    """Client side: the server subprocess and its control socket."""

    def __init__(self, proc: subprocess.Popen, mountpoint: Path, control: Path) -> None:
        self.proc, self.mountpoint, self.control = proc, mountpoint, control

    @classmethod
    def mount(cls, mountpoint: str | os.PathLike, image: str | os.PathLike, metadata_sync: bool = False,
              timeout: float = 20.0) -> "LazyFS":
        mnt, image = Path(mountpoint), Path(image)
        mnt.mkdir(parents=True, exist_ok=True)
        control = Path(tempfile.mkdtemp(prefix="lazyfs-")) / "control"  # short: a socket path has 108 bytes
        proc = subprocess.Popen([sys.executable, __file__, str(mnt), str(image), str(control),
                                 "metadata_sync" if metadata_sync else "strict"],
                                stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        end = time.monotonic() + timeout
        while not os.path.ismount(mnt) or not control.exists():
            if proc.poll() is not None or time.monotonic() > end:
                proc.kill()
                raise RuntimeError(f"lazyfs did not mount: {proc.stderr.read().decode(errors='replace')}")
            time.sleep(0.02)
        return cls(proc, mnt, control)

    def _ask(self, command: str) -> str:
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
            s.connect(str(self.control))
            s.sendall(command.encode() + b"\n")
            return s.makefile().readline().strip()

    def cut(self) -> None:
        """Power cut: nothing written from now on reaches the disk."""
        assert self._ask("cut") == "ok"

    def fsyncs(self) -> int:
        return int(self._ask("fsyncs"))

    def unmount(self) -> None:
        """Save the disk image and unmount (the writers must be dead or done)."""
        try:
            self._ask("save")
        finally:
            subprocess.run(["umount", "-l", str(self.mountpoint)], capture_output=True)
            try:
                self.proc.wait(20)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)


def serve(mountpoint: str, image: str, control: str, mode: str = "strict") -> None:
    from fuse import FUSE

    img = Path(image)
    root = restore(pickle.loads(img.read_bytes())) if img.is_file() else Node(True, stat.S_IFDIR | 0o755)
    ops = _ops()(root, mode == "metadata_sync")

    def controller() -> None:
        srv = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        srv.bind(control)
        srv.listen(4)
        while True:
            conn, _ = srv.accept()
            with conn:
                cmd = conn.makefile().readline().strip()
                if cmd == "cut":
                    ops.cut()
                    reply = "ok"
                elif cmd == "save":
                    with ops._mutex:
                        ops.cut()
                        tmp = img.with_name(img.name + ".tmp")
                        tmp.write_bytes(pickle.dumps(ops.root, protocol=pickle.HIGHEST_PROTOCOL))
                        os.replace(tmp, img)
                    reply = "ok"
                elif cmd == "fsyncs":
                    reply = str(ops.fsyncs)
                else:
                    reply = "?"
                conn.sendall(reply.encode() + b"\n")

    def orphaned() -> None:  # the test process died without unmounting: do not leave a dead mount behind
        parent = os.getppid()
        while os.getppid() == parent:
            time.sleep(0.5)
        subprocess.run(["umount", "-l", mountpoint], capture_output=True)
        os._exit(1)

    threading.Thread(target=controller, daemon=True).start()
    threading.Thread(target=orphaned, daemon=True).start()
    sys.setrecursionlimit(10000)
    FUSE(ops, mountpoint, foreground=True, nothreads=False, attr_timeout=0, entry_timeout=0, negative_timeout=0)


if __name__ == "__main__":
    serve(*sys.argv[1:5])
