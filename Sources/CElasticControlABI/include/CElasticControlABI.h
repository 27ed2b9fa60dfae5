#ifndef CELASTIC_CONTROL_ABI_H
#define CELASTIC_CONTROL_ABI_H
#include "elastic/elastic_ioctl.h"
/// The ioctl numbers of elastic_ioctl.h as values Swift can see.
extern const unsigned int CElasticControlABI_IOC_CLOCK;
extern const unsigned int CElasticControlABI_IOC_RANDOM;
extern const unsigned int CElasticControlABI_IOC_DERIVE;
extern const unsigned int CElasticControlABI_IOC_STOPWATCH;
extern const unsigned int CElasticControlABI_IOC_HASH;
extern const unsigned int CElasticControlABI_IOC_ATTEST;
extern const unsigned int CElasticControlABI_IOC_EVIDENCE;
extern const unsigned int CElasticControlABI_EVIDENCE_DATA_OFFSET;
extern const unsigned int CElasticControlABI_IOC_KEY;
extern const unsigned int CElasticControlABI_IOC_KEYOP;

/// ioctl(2) (variadic in C, so wrapped).
int CElasticControlABI_ioctl(int fd, unsigned int cmd, void *arg);
#endif
