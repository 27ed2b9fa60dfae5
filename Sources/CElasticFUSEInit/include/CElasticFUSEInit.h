#ifndef CELASTIC_FUSE_INIT_H
#define CELASTIC_FUSE_INIT_H
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>
#include <sys/uio.h>
/// /dev/fuse read and writev for libfuse's custom-io hook (see fuse_io.c).
ssize_t CElasticFUSEInit_fuse_read(int fd, void *buf, size_t len, void *userdata);
ssize_t CElasticFUSEInit_fuse_writev(int fd, struct iovec *iov, int count, void *userdata);
struct fuse_session;
/// Serves `se` with `threads` workers until it ends (see fuse_loop.c); the reader polls
/// /dev/fuse for `spin_us` microseconds before it sleeps (0: it sleeps at once). Returns 0 or a
/// negative errno.
int CElasticFUSEInit_loop(struct fuse_session *se, unsigned threads, unsigned spin_us);
/// 1 once the kernel accepted FUSE_HANDLE_KILLPRIV_V2: the filesystem clears setuid/setgid.
int CElasticFUSEInit_fuse_killpriv_v2_enabled(void);

#endif
