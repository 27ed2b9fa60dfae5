// The Intel TDX guest ABI: TDX_CMD_GET_REPORT0 on /dev/tdx_guest. Linux's UAPI header
// <linux/tdx-guest.h> (6.2+) is the source of truth; older linux-libc-dev lacks it, so the layout
// is restated here and checked against the kernel's header wherever that header exists.
#include "CElasticTDX.h"
#include <sys/ioctl.h>

_Static_assert(sizeof(struct celastic_tdx_report_req) == 1088, "tdx_report_req is 64 + 1024 bytes");
#if __has_include(<linux/tdx-guest.h>)
#include <linux/tdx-guest.h>
_Static_assert(sizeof(struct tdx_report_req) == sizeof(struct celastic_tdx_report_req), "tdx_report_req");
_Static_assert(TDX_CMD_GET_REPORT0 == _IOWR('T', 1, struct celastic_tdx_report_req), "TDX_CMD_GET_REPORT0");
#endif

const unsigned long CElasticTDX_TDX_CMD_GET_REPORT0 = _IOWR('T', 1, struct celastic_tdx_report_req);

int CElasticTDX_tdx_get_report0(int fd, struct celastic_tdx_report_req *req) {
    return ioctl(fd, CElasticTDX_TDX_CMD_GET_REPORT0, req);
}
