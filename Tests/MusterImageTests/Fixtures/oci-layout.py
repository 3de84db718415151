#!/usr/bin/env python3
"""Writes an OCI image layout from a JSON description, with layers made by Python's tarfile: an
independent tar writer, so that the tests do not check libarchive's reading against its own
writing, and so that hostile layers (../ names, links out of the root) can be made at all.

    oci-layout.py SPEC.json DIR

SPEC: {"tag": "latest", "architecture": "amd64", "os": "linux", "config": {"Env": [...], ...},
       "layerMediaType": optional override, "layers": [{"gzip": bool, "entries": [ENTRY, ...]}]}
ENTRY: {"name": "a/b", "type": "file|dir|symlink|hardlink|char|block|fifo", "data": "text",
        "mode": 420, "uid": 0, "gid": 0, "link": "target", "major": 1, "minor": 3,
        "mtime": 1000000000, "xattrs": {"user.k": "v"}}
"""
import gzip
import hashlib
import io
import json
import os
import sys
import tarfile

TYPES = {"file": tarfile.REGTYPE, "dir": tarfile.DIRTYPE, "symlink": tarfile.SYMTYPE,
         "hardlink": tarfile.LNKTYPE, "char": tarfile.CHRTYPE, "block": tarfile.BLKTYPE,
         "fifo": tarfile.FIFOTYPE}


def blob(out, data):
    digest = hashlib.sha256(data).hexdigest()
    with open(os.path.join(out, "blobs", "sha256", digest), "wb") as f:
        f.write(data)
    return "sha256:" + digest, len(data)


def layer_tar(entries):
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for e in entries:
            info = tarfile.TarInfo(e["name"])
            info.type = TYPES[e.get("type", "file")]
            info.mode = e.get("mode", 0o755 if info.type == tarfile.DIRTYPE else 0o644)
            info.uid, info.gid = e.get("uid", 0), e.get("gid", 0)
            info.mtime = e.get("mtime", 1_600_000_000)
            info.linkname = e.get("link", "")
            info.devmajor, info.devminor = e.get("major", 0), e.get("minor", 0)
            if e.get("xattrs"):
                info.pax_headers = {"SCHILY.xattr." + k: v for k, v in e["xattrs"].items()}
            data = e.get("data", "").encode()
            if info.type == tarfile.REGTYPE:
                info.size = len(data)
                tar.addfile(info, io.BytesIO(data))
            else:
                tar.addfile(info)
    return buffer.getvalue()


def main(spec_path, out):
    spec = json.load(open(spec_path))
    os.makedirs(os.path.join(out, "blobs", "sha256"))
    with open(os.path.join(out, "oci-layout"), "w") as f:
        json.dump({"imageLayoutVersion": "1.0.0"}, f)
    layers, diff_ids = [], []
    for layer in spec["layers"]:
        tar = layer_tar(layer["entries"])
        diff_ids.append("sha256:" + hashlib.sha256(tar).hexdigest())
        data = gzip.compress(tar, mtime=0) if layer.get("gzip") else tar
        media = "application/vnd.oci.image.layer.v1.tar" + ("+gzip" if layer.get("gzip") else "")
        digest, size = blob(out, data)
        layers.append({"mediaType": spec.get("layerMediaType", media), "digest": digest, "size": size})
    config = {"architecture": spec.get("architecture", "amd64"), "os": spec.get("os", "linux"),
              "config": spec.get("config", {}), "rootfs": {"type": "layers", "diff_ids": diff_ids}}
    config_digest, config_size = blob(out, json.dumps(config).encode())
    manifest = {"schemaVersion": 2, "mediaType": "application/vnd.oci.image.manifest.v1+json",
                "config": {"mediaType": "application/vnd.oci.image.config.v1+json",
                           "digest": config_digest, "size": config_size},
                "layers": layers}
    manifest_digest, manifest_size = blob(out, json.dumps(manifest).encode())
    descriptor = {"mediaType": "application/vnd.oci.image.manifest.v1+json",
                  "digest": manifest_digest, "size": manifest_size,
                  "annotations": {"org.opencontainers.image.ref.name": spec.get("tag", "latest")}}
    if spec.get("nestedIndex"):
        # A multi-platform image: index.json points at an image index, which lists this manifest
        # for linux/<architecture> beside one for another platform.
        descriptor.pop("annotations")
        descriptor["platform"] = {"os": config["os"], "architecture": config["architecture"]}
        other = dict(descriptor, platform={"os": "linux", "architecture": "s390x"})
        index_digest, index_size = blob(out, json.dumps({"schemaVersion": 2, "manifests": [other, descriptor]}).encode())
        descriptor = {"mediaType": "application/vnd.oci.image.index.v1+json", "digest": index_digest,
                      "size": index_size, "annotations": {"org.opencontainers.image.ref.name": spec.get("tag", "latest")}}
    with open(os.path.join(out, "index.json"), "w") as f:
        json.dump({"schemaVersion": 2, "manifests": [descriptor]}, f)


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2])
