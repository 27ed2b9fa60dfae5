// The SEV-SNP guest ABI, straight from the kernel's UAPI header (the one source of truth).
#include <linux/sev-guest.h>
#include <sys/ioctl.h>
#include "CElasticSEV.h"

_Static_assert(sizeof(struct snp_guest_request_ioctl) == 32, "snp_guest_request_ioctl");
_Static_assert(sizeof(struct snp_derived_key_req) == 32, "snp_derived_key_req");
_Static_assert(sizeof(struct snp_derived_key_resp) == 64, "snp_derived_key_resp");
_Static_assert(sizeof(struct snp_report_req) == 96, "snp_report_req");
_Static_assert(sizeof(struct snp_report_resp) == 4000, "snp_report_resp");

const unsigned long CElasticSEV_SNP_GET_REPORT = SNP_GET_REPORT;
const unsigned long CElasticSEV_SNP_GET_DERIVED_KEY = SNP_GET_DERIVED_KEY;
const unsigned long CElasticSEV_SNP_GET_EXT_REPORT = SNP_GET_EXT_REPORT;

int CElasticSEV_snp_ioctl(int fd, unsigned long cmd, struct snp_guest_request_ioctl *req) {
    return ioctl(fd, cmd, req);
}
