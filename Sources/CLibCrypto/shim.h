#ifndef MUSTER_CLIBCRYPTO_SHIM_H
#define MUSTER_CLIBCRYPTO_SHIM_H
// Only the digest API: SHA-256 of image blobs.
#include <openssl/evp.h>
#endif
