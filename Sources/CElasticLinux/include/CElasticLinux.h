#ifndef CELASTIC_LINUX_H
#define CELASTIC_LINUX_H
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>
#include <sys/stat.h>
#include <sys/xattr.h>

/// GNU-only constants and calls, compiled in a C file with _GNU_SOURCE so that the
/// Swift Glibc module (built without it) stays consistent.
extern const int CElasticLinux_O_PATH;
extern const int CElasticLinux_O_NOATIME;
extern const int CElasticLinux_AT_EMPTY_PATH;
extern const unsigned int CElasticLinux_RENAME_NOREPLACE;
extern const unsigned int CElasticLinux_RENAME_EXCHANGE;
extern const int CElasticLinux_FALLOC_FL_KEEP_SIZE;
extern const int CElasticLinux_SEEK_DATA;

int CElasticLinux_renameat2(int olddirfd, const char *oldpath, int newdirfd, const char *newpath, unsigned int flags);
int CElasticLinux_fallocate(int fd, int mode, off_t offset, off_t len);
/// Marks the process non-dumpable (no core dumps, no ptrace by other users).
int CElasticLinux_set_nondumpable(void);
/// mlockall(MCL_CURRENT | MCL_FUTURE | MCL_ONFAULT).
int CElasticLinux_lock_memory(void);
/// setpriority(PRIO_PROCESS, gettid(), niceness): lowers the calling thread's priority only.
int CElasticLinux_nice_thread(int niceness);
/// Raises RLIMIT_NOFILE to its hard limit.
int CElasticLinux_raise_nofile(void);
int CElasticLinux_syncfs(int fd);


/// syslog(3) with a plain message (syslog itself is variadic, which Swift cannot call).
void CElasticLinux_syslog(int priority, const char *message);
void CElasticLinux_openlog(const char *ident);

/// pipe2(fds, O_CLOEXEC).
int CElasticLinux_pipe_cloexec(int fds[2]);

/// posix_spawn_file_actions_addclosefrom_np: the child closes every fd >= from.
int CElasticLinux_spawn_closefrom(void *actions, int from);

/// openat2(2) with RESOLVE_BENEATH | RESOLVE_NO_SYMLINKS | RESOLVE_NO_MAGICLINKS | RESOLVE_NO_XDEV:
/// opens a relative path of several components without ever leaving `dirfd`'s tree or following
/// a symlink. -1 with errno (ENOSYS before Linux 5.6).
int CElasticLinux_openat_beneath(int dirfd, const char *path, int flags);

/// pidfd_open(2): a descriptor that becomes readable when process `pid` exits (-1 and errno).
int CElasticLinux_pidfd_open(int pid);

/// epoll and eventfd for the process watcher (struct epoll_event is packed, so Swift never sees it).
int CElasticLinux_epoll_create(void);
int CElasticLinux_epoll_add(int epfd, int fd, uint64_t data);
int CElasticLinux_epoll_del(int epfd, int fd);
/// Waits for up to `max` (at most 64) ready descriptors; stores their data words in `data`.
int CElasticLinux_epoll_wait(int epfd, uint64_t *data, int max, int timeout_ms);
int CElasticLinux_eventfd(void);
/// 1 if `fd` is readable now (a pidfd: its process has exited), 0 if not, -1 on error.
int CElasticLinux_readable_now(int fd);

/// tgkill(2) (a GNU extension): with signal 0, whether thread `tid` belongs to process `tgid`.
int CElasticLinux_tgkill(int tgid, int tid, int sig);

#endif
