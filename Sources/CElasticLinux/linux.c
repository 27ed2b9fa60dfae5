#define _GNU_SOURCE
#include <signal.h>
#include <fcntl.h>
#include <stdio.h>
#include <unistd.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include "CElasticLinux.h"

const int CElasticLinux_O_PATH = O_PATH;
const int CElasticLinux_O_NOATIME = O_NOATIME;
const int CElasticLinux_AT_EMPTY_PATH = AT_EMPTY_PATH;
const unsigned int CElasticLinux_RENAME_NOREPLACE = RENAME_NOREPLACE;
const unsigned int CElasticLinux_RENAME_EXCHANGE = RENAME_EXCHANGE;
const int CElasticLinux_FALLOC_FL_KEEP_SIZE = FALLOC_FL_KEEP_SIZE;
const int CElasticLinux_SEEK_DATA = SEEK_DATA;

int CElasticLinux_renameat2(int olddirfd, const char *oldpath, int newdirfd, const char *newpath, unsigned int flags) {
    return renameat2(olddirfd, oldpath, newdirfd, newpath, flags);
}

int CElasticLinux_fallocate(int fd, int mode, off_t offset, off_t len) {
    return fallocate(fd, mode, offset, len);
}

int CElasticLinux_set_nondumpable(void) { return prctl(PR_SET_DUMPABLE, 0, 0, 0, 0); }

int CElasticLinux_raise_nofile(void) {
    struct rlimit rl;
    if (getrlimit(RLIMIT_NOFILE, &rl) != 0) return -1;
    rl.rlim_cur = rl.rlim_max;
    return setrlimit(RLIMIT_NOFILE, &rl);
}

#include <sys/mman.h>
int CElasticLinux_lock_memory(void) { return mlockall(MCL_CURRENT | MCL_FUTURE | MCL_ONFAULT); }

int CElasticLinux_nice_thread(int niceness) { return setpriority(PRIO_PROCESS, (id_t)gettid(), niceness); }

int CElasticLinux_syncfs(int fd) { return syncfs(fd); }

#include <syslog.h>
void CElasticLinux_syslog(int priority, const char *message) { syslog(priority, "%s", message); }
void CElasticLinux_openlog(const char *ident) { openlog(ident, LOG_PID, LOG_DAEMON); }

int CElasticLinux_pipe_cloexec(int fds[2]) { return pipe2(fds, O_CLOEXEC); }

#include <spawn.h>
int CElasticLinux_spawn_closefrom(void *actions, int from) {
    return posix_spawn_file_actions_addclosefrom_np((posix_spawn_file_actions_t *)actions, from);
}

int CElasticLinux_tgkill(int tgid, int tid, int sig) { return tgkill(tgid, tid, sig); }

#include <sys/syscall.h>
#include <linux/openat2.h>
int CElasticLinux_openat_beneath(int dirfd, const char *path, int flags) {
    struct open_how how = {.flags = (unsigned long long)flags,
                           .resolve = RESOLVE_BENEATH | RESOLVE_NO_SYMLINKS | RESOLVE_NO_MAGICLINKS | RESOLVE_NO_XDEV};
    return (int)syscall(SYS_openat2, dirfd, path, &how, sizeof how);
}
int CElasticLinux_pidfd_open(int pid) { return (int)syscall(SYS_pidfd_open, pid, 0); }

#include <poll.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
int CElasticLinux_epoll_create(void) { return epoll_create1(EPOLL_CLOEXEC); }
int CElasticLinux_epoll_add(int epfd, int fd, uint64_t data) {
    struct epoll_event ev = {.events = EPOLLIN, .data.u64 = data};
    return epoll_ctl(epfd, EPOLL_CTL_ADD, fd, &ev);
}
int CElasticLinux_epoll_del(int epfd, int fd) { return epoll_ctl(epfd, EPOLL_CTL_DEL, fd, NULL); }
int CElasticLinux_epoll_wait(int epfd, uint64_t *data, int max, int timeout_ms) {
    struct epoll_event evs[64];
    if (max > 64) max = 64;
    int n = epoll_wait(epfd, evs, max, timeout_ms);
    for (int i = 0; i < n; i++) data[i] = evs[i].data.u64;
    return n;
}
int CElasticLinux_eventfd(void) { return eventfd(0, EFD_CLOEXEC); }
int CElasticLinux_readable_now(int fd) {
    struct pollfd p = {.fd = fd, .events = POLLIN};
    int n = poll(&p, 1, 0);
    return n < 0 ? -1 : (n > 0 && (p.revents & POLLIN) ? 1 : 0);
}
