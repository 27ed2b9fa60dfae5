// Pins the control ABI: every struct's size, and the ioctl numbers exported for Swift
// (function-like macros such as _IOWR cannot be imported).
#include "elastic/elastic_ioctl.h"
#include "CElasticControlABI.h"
#include <stddef.h>

_Static_assert(sizeof(struct elastic_clock) == 104, "elastic_clock");
_Static_assert(sizeof(struct elastic_random) == 4112, "elastic_random");
_Static_assert(sizeof(struct elastic_derive) == 352, "elastic_derive");
_Static_assert(sizeof(struct elastic_stopwatch) == 48, "elastic_stopwatch");
_Static_assert(sizeof(struct elastic_hash) == 4128, "elastic_hash");
_Static_assert(sizeof(struct elastic_attest) == 4080, "elastic_attest");
_Static_assert(sizeof(struct elastic_key) == 4208, "elastic_key");
_Static_assert(sizeof(struct elastic_keyop) == 4208, "elastic_keyop");
_Static_assert(sizeof(struct elastic_evidence) == 15376, "elastic_evidence");

const unsigned int CElasticControlABI_IOC_CLOCK = ELASTIC_IOC_CLOCK;
const unsigned int CElasticControlABI_IOC_RANDOM = ELASTIC_IOC_RANDOM;
const unsigned int CElasticControlABI_IOC_DERIVE = ELASTIC_IOC_DERIVE;
const unsigned int CElasticControlABI_IOC_STOPWATCH = ELASTIC_IOC_STOPWATCH;
const unsigned int CElasticControlABI_IOC_HASH = ELASTIC_IOC_HASH;
const unsigned int CElasticControlABI_IOC_ATTEST = ELASTIC_IOC_ATTEST;
const unsigned int CElasticControlABI_IOC_KEY = ELASTIC_IOC_KEY;
const unsigned int CElasticControlABI_IOC_KEYOP = ELASTIC_IOC_KEYOP;
const unsigned int CElasticControlABI_IOC_EVIDENCE = ELASTIC_IOC_EVIDENCE;
/* Swift imports C arrays of at most 4096 elements: the evidence is reached by offset. */
const unsigned int CElasticControlABI_EVIDENCE_DATA_OFFSET = offsetof(struct elastic_evidence, data);

#include <sys/ioctl.h>
int CElasticControlABI_ioctl(int fd, unsigned int cmd, void *arg) { return ioctl(fd, cmd, arg); }
