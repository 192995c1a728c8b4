#include "trace/trace-block_tesseract.h"
