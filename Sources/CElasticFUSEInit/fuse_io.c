// Reads and writes of /dev/fuse for libfuse's custom-io hook. They pass everything through and
// do one thing more: offer FUSE_HANDLE_KILLPRIV_V2 in the INIT reply when the kernel supports
// it (libfuse 3.14 does not know that flag). With it the kernel stops asking
// getxattr("security.capability") before every write, and ELASTIC clears setuid/setgid itself.
#include <linux/fuse.h>
#include <stdatomic.h>
#include <string.h>
#include <sys/uio.h>
#include <unistd.h>
#include "CElasticFUSEInit.h"

static _Atomic uint64_t init_unique = 0;
static _Atomic int kernel_offers_v2 = 0;
static _Atomic int v2_enabled = 0;

ssize_t CElasticFUSEInit_fuse_read(int fd, void *buf, size_t len, void *userdata) {
    (void)userdata;
    ssize_t n = read(fd, buf, len);
    if (n >= (ssize_t)(sizeof(struct fuse_in_header) + 16)) {
        const struct fuse_in_header *h = buf;
        if (h->opcode == FUSE_INIT) {
            const struct fuse_init_in *in = (const void *)((const char *)buf + sizeof(*h));
            atomic_store(&kernel_offers_v2, (in->flags & FUSE_HANDLE_KILLPRIV_V2) != 0);
            atomic_store(&init_unique, h->unique);
        }
    }
    return n;
}

ssize_t CElasticFUSEInit_fuse_writev(int fd, struct iovec *iov, int count, void *userdata) {
    (void)userdata;
    uint64_t unique = atomic_load(&init_unique);
    if (unique != 0 && count >= 2 && iov[0].iov_len >= sizeof(struct fuse_out_header) &&
        iov[1].iov_len >= 16) {
        struct fuse_out_header *h = iov[0].iov_base;
        if (h->unique == unique && h->error == 0) {
            atomic_store(&init_unique, 0);
            if (atomic_load(&kernel_offers_v2)) {
                struct fuse_init_out *out = iov[1].iov_base;
                out->flags |= FUSE_HANDLE_KILLPRIV_V2;
                atomic_store(&v2_enabled, 1);
            }
        }
    }
    return writev(fd, iov, count);
}

int CElasticFUSEInit_fuse_killpriv_v2_enabled(void) { return atomic_load(&v2_enabled); }
