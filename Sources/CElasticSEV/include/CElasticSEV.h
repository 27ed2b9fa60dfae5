#ifndef CELASTIC_SEV_H
#define CELASTIC_SEV_H
#include <stddef.h>
#include <stdint.h>

/// The SEV-SNP guest ABI of the kernel (drivers/virt/coco/sev-guest).
#include <linux/sev-guest.h>
/// SNP guest ioctl numbers, computed from <linux/sev-guest.h>.
extern const unsigned long CElasticSEV_SNP_GET_REPORT;
extern const unsigned long CElasticSEV_SNP_GET_DERIVED_KEY;
extern const unsigned long CElasticSEV_SNP_GET_EXT_REPORT;
/// ioctl(2) on /dev/sev-guest (ioctl itself is variadic).
int CElasticSEV_snp_ioctl(int fd, unsigned long cmd, struct snp_guest_request_ioctl *req);

#endif
