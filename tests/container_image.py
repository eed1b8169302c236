"""The top-level Containerfile built with podman on Debian 12, offline but for the package
registries (tests only).

No container registry is reachable, so the Containerfile's base (debian:bookworm-slim) is made
from Debian's packages with mmdebstrap (--variant=minbase, the host's apt mirror) and imported
as a local image; the build starts from it (`podman build --from`). podman runs with runc and a
containers.conf of its own (CONTAINERS_CONF, nothing in /etc is changed): crun cannot set
RLIMIT_NOFILE here and cgroups are in hybrid mode. The build sees the host's pip configuration,
its CA bundle (the registry is reached through a proxy with its own CA) and the local package
folders it names (read-only volumes), so pip inside it gets the same packages as on the host;
none of them ends up in the image.
"""

from __future__ import annotations

import configparser
import os
import re
import shutil
import subprocess
import time
from pathlib import Path

PACKAGES = ("podman", "runc", "mmdebstrap", "uidmap", "fuse-overlayfs", "slirp4netns")
BASE = "localhost/medrobust-test-bookworm"
CONTAINERS_CONF = """\
[containers]
default_ulimits = []
[engine]
cgroup_manager = "cgroupfs"
"""
# the host's pip configuration files (global, then user: later ones win)
PIP_CONFIGS = ("/etc/pip.conf", "/etc/xdg/pip/pip.conf", str(Path.home() / ".config/pip/pip.conf"))
HOST_CERTS = "/host-certs"  # where the build sees the host's CA bundle (/etc/ssl/certs is the image's own)


def run(cmd: list[str], env: dict[str, str], timeout: float, stderr: bool = False) -> str:
    """cmd's output (stdout, and stderr too if asked); raises with both when it fails."""
    done = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=timeout)
    if done.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd)} failed ({done.returncode}):\n{(done.stdout + done.stderr)[-4000:]}")
    return done.stdout + done.stderr if stderr else done.stdout


def podman_installed() -> bool:
    return shutil.which("podman") is not None and shutil.which("mmdebstrap") is not None


def install_packages() -> None:
    """Debian's podman, runc and mmdebstrap, from the registry, when missing."""
    if not podman_installed():
        env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
        run(["apt-get", "update"], env, timeout=300)
        run(["apt-get", "install", "-y", "--no-install-recommends", *PACKAGES], env, timeout=900)


def podman_env(workdir: Path) -> dict[str, str]:
    conf = workdir / "containers.conf"
    conf.write_text(CONTAINERS_CONF)
    return {**os.environ, "CONTAINERS_CONF": str(conf)}


def podman(args: list[str], env: dict[str, str], timeout: float = 600, stderr: bool = False) -> str:
    return run(["podman", "--runtime", "runc", *args], env, timeout, stderr)


def apt_mirror() -> str:
    """The host's Debian mirror (first URI of its apt sources), e.g. http://deb.debian.org/debian."""
    texts = [p.read_text() for p in sorted(Path("/etc/apt").glob("sources.list.d/*.sources"))]
    texts += [p.read_text() for p in Path("/etc/apt").glob("sources.list") if p.exists()]
    for text in texts:
        for uri in re.findall(r"^URIs:\s*(\S+)|^deb\s+(?:\[[^]]*\]\s+)?(\S+)", text, re.M):
            uri = uri[0] or uri[1]
            if "security" not in uri:
                return uri
    return "http://deb.debian.org/debian"


def base_image(workdir: Path, env: dict[str, str]) -> str:
    """A local Debian bookworm base (what debian:bookworm-slim is), made once."""
    if subprocess.run(["podman", "image", "exists", BASE], env=env).returncode != 0:
        rootfs = workdir / "bookworm.tar"
        run(["mmdebstrap", "--variant=minbase", "bookworm", str(rootfs), apt_mirror()], env, timeout=600)
        podman(["import", str(rootfs), BASE], env)
        rootfs.unlink()
    return BASE


def host_pip_volumes(workdir: Path) -> list[str]:
    """-v options giving the build the host's pip settings (one merged pip.conf, its CA bundle
    under HOST_CERTS) and the local package folders they name, all read-only."""
    merged = configparser.ConfigParser()
    merged.read([p for p in PIP_CONFIGS if Path(p).is_file()])
    volumes, folders = {}, set()
    for section in merged.sections():
        for key, value in merged[section].items():
            if key == "cert":
                bundle = Path(value)
                volumes[str(bundle.resolve().parent)] = HOST_CERTS
                merged[section][key] = f"{HOST_CERTS}/{bundle.resolve().name}"
                continue
            for path in (p.removeprefix("file://") for p in value.split() if re.match(r"(file://)?/", p)):
                folders.add(Path(path).parent if Path(path).name == "simple" else Path(path))  # ../files
    volumes.update({str(f): str(f) for f in folders if f.exists()})
    conf = workdir / "pip.conf"
    with conf.open("w") as f:
        merged.write(f)
    volumes[str(conf)] = "/etc/pip.conf"
    return [f"-v={host}:{inside}:ro" for host, inside in volumes.items()]


def build(repo: Path, tag: str, workdir: Path, env: dict[str, str]) -> float:
    """podman build of repo's Containerfile as tag; returns the seconds it took. The image the tag
    named before is removed, so repeated runs do not pile up untagged 6 GB images."""
    base = base_image(workdir, env)
    before = _image_id(tag, env)
    start = time.monotonic()
    podman(["build", "--network=host", f"--from={base}", *host_pip_volumes(workdir), "-t", tag,
            "-f", str(repo / "Containerfile"), str(repo)], env, timeout=1800)
    seconds = time.monotonic() - start
    if before and before != _image_id(tag, env):
        subprocess.run(["podman", "--runtime", "runc", "rmi", before], env=env, capture_output=True, timeout=300)
    return seconds


def _image_id(tag: str, env: dict[str, str]) -> str | None:
    """The id of the image `tag` names, or None when there is none."""
    done = subprocess.run(["podman", "--runtime", "runc", "image", "inspect", "--format", "{{.Id}}", tag], env=env,
                          capture_output=True, text=True, timeout=60)
    return (done.stdout.strip() or None) if done.returncode == 0 else None


def image_size(tag: str, env: dict[str, str]) -> int:
    return int(podman(["image", "inspect", "--format", "{{.Size}}", tag], env, timeout=60).strip())
