"""Shared by the kill-and-remount scripts: a foreground mount.elastic whose output goes to a
log, started and waited for."""
import subprocess, time


def mounted(mnt):
    with open("/proc/mounts") as f:
        return any(line.split()[1] == mnt for line in f)


def mount(bin_dir, store, mnt, options, log):
    """Starts the daemon in the foreground (`-o options`, output appended to `log`) and returns
    it once `mnt` is mounted: up to 60 s, as the first mount after a crash walks the store."""
    logf = open(log, "a")
    p = subprocess.Popen([bin_dir + "/mount.elastic", store, mnt, "-o", options, "-f"], stdout=logf, stderr=logf)
    for _ in range(1200):
        if mounted(mnt):
            return p
        if p.poll() is not None:
            raise SystemExit(f"mount failed (status {p.returncode}): {open(log).read()[-2000:]}")
        time.sleep(0.05)
    raise SystemExit("not mounted in 60 s")
