// What this host holds (manifests and config files, users and groups) lives in MusterHost, so
// musterctl can read it without linking the daemon's runtime; everything that imports the
// runtime keeps seeing it.
@_exported import MusterHost
