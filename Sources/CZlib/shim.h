// Exposes the system zlib to Swift through the CZlib module.
#include <zlib.h>
