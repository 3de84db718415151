#ifndef MUSTER_CARCHIVE_SHIM_H
#define MUSTER_CARCHIVE_SHIM_H
#include <archive.h>
#include <archive_entry.h>
#endif
