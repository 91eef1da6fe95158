/* The hints are inline in the header; SwiftPM needs a source file to build the module. */
#include "dsgd_memory_hints.h"
