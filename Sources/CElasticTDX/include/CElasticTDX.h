#ifndef CELASTIC_TDX_H
#define CELASTIC_TDX_H
#include <stddef.h>
#include <stdint.h>

/// Intel TDX: `struct tdx_report_req` of <linux/tdx-guest.h> (tdx.c checks it against the kernel's).
struct celastic_tdx_report_req {
    unsigned char reportdata[64]; /* in: the caller's data */
    unsigned char tdreport[1024]; /* out: TDREPORT_STRUCT */
};
extern const unsigned long CElasticTDX_TDX_CMD_GET_REPORT0;
int CElasticTDX_tdx_get_report0(int fd, struct celastic_tdx_report_req *req);
#endif
