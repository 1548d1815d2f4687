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
