#include "trace/trace-hw_mem_tesseract.h"
