"""The image archive made of one binary (kind loads it with `kind load image-archive`; the kind
test loads and runs a real one): the format `docker save` writes, with digests that check out,
so containerd's importer accepts it."""

from __future__ import annotations

import hashlib
import json
import tarfile

from harness.backends import binimage


def test_a_binary_becomes_a_docker_save_archive_whose_digests_hold(tmp_path):
    binary = tmp_path / "test-driver"
    binary.write_bytes(b"\x7fELF fake static binary")
    out = binimage.write(binary, "localhost/dra-test-driver:local", tmp_path / "img.tar", args=["-v=5"])
    with tarfile.open(out) as tar:
        manifest = json.loads(tar.extractfile("manifest.json").read())
        assert manifest[0]["RepoTags"] == ["localhost/dra-test-driver:local"]
        config_bytes = tar.extractfile(manifest[0]["Config"]).read()
        assert manifest[0]["Config"] == hashlib.sha256(config_bytes).hexdigest() + ".json"
        config = json.loads(config_bytes)
        layer = tar.extractfile(manifest[0]["Layers"][0]).read()
    assert config["rootfs"]["diff_ids"] == ["sha256:" + hashlib.sha256(layer).hexdigest()]
    assert config["config"]["Entrypoint"] == ["/test-driver"] and config["config"]["Cmd"] == ["-v=5"]
    assert config["os"] == "linux" and config["architecture"] in ("amd64", "arm64")
    with tarfile.open(fileobj=__import__("io").BytesIO(layer)) as lt:
        member = lt.getmember("test-driver")
        assert member.mode & 0o111 and lt.extractfile(member).read() == binary.read_bytes()
        assert "tmp/.keep" in lt.getnames()
    assert not list(tmp_path.glob(".*.tmp")), "the temporary archive is renamed into place"


def test_driver_image_cli_writes_the_archive_and_refuses_what_cannot_run(tmp_path):
    """`dra-harness driver-image`: a static binary becomes an archive; a script, a dynamically
    linked binary (no libc in the image) or a malformed tag is one line and exit 2."""
    from .conftest import cli

    static = tmp_path / "drv"
    static.write_bytes(b"\x7fELF" + b"\0" * 60)
    static.chmod(0o755)
    r = cli("dra-harness", "driver-image", str(static), "--tag", "localhost/drv:dev", "-o", str(tmp_path / "d.tar"))
    assert r.returncode == 0 and (tmp_path / "d.tar").is_file(), r.stderr
    with tarfile.open(tmp_path / "d.tar") as tar:
        assert json.loads(tar.extractfile("manifest.json").read())[0]["RepoTags"] == ["localhost/drv:dev"]
    script = tmp_path / "s.sh"
    script.write_text("#!/bin/sh\n")
    script.chmod(0o755)
    dynamic = tmp_path / "dyn"
    dynamic.write_bytes(b"\x7fELF" + b"\0" * 60 + b"/lib64/ld-linux-x86-64.so.2\0")
    dynamic.chmod(0o755)
    for args, said in (([str(script), "--tag", "localhost/x:1"], "not an ELF executable"),
                       ([str(dynamic), "--tag", "localhost/x:1"], "dynamically linked"),
                       ([str(static), "--tag", "Not A Tag"], "is not an image reference"),
                       ([str(tmp_path / "none"), "--tag", "localhost/x:1"], "not an executable file")):
        r = cli("dra-harness", "driver-image", *args, "-o", str(tmp_path / "x.tar"))
        assert r.returncode == 2 and said in r.stderr and len(r.stderr.splitlines()) == 1, r.stderr
    assert not (tmp_path / "x.tar").exists()


def test_a_profiles_relative_chart_and_images_are_beside_the_profile(tmp_path, monkeypatch):
    """A user's profile names its chart and archives relative to itself, wherever it runs from."""
    from harness.backends import profiles

    (tmp_path / "u").mkdir()
    (tmp_path / "u/p.yaml").write_text("name: p\ndriver: a.example.com\nkind_chart: ../charts/p\n"
                                       "kind_images: [./p.tar, localhost/p:1]\n")
    monkeypatch.chdir("/")
    p = profiles.load(tmp_path / "u/p.yaml")
    assert p.kind_chart == str(tmp_path / "charts/p") and p.kind_images == [str(tmp_path / "u/p.tar"), "localhost/p:1"]
    assert profiles.resolve("refdriver-neuron").kind_chart == "deploy/chart/dra-harness-refdriver"  # built-ins: the repo's
