// The request loop: a fixed pool of threads serves one libfuse low-level session, and at most
// one of them (the reader) waits on /dev/fuse at a time.
//
// libfuse's own multi-threaded loop keeps every idle thread asleep in read(). Each request then
// wakes a sleeping thread, and on a virtual machine a wake-up of an idle CPU costs an
// inter-processor interrupt and a VM exit: for short, back-to-back requests (rm -rf, tar) that
// is a large part of the round trip. Here the reader, having answered a request, polls
// /dev/fuse for a short while (`spin_us`) before it sleeps, so the next request of a busy
// caller is taken without any wake-up. The others wait on a condition variable, never on the
// device, so the kernel wakes nobody for a request the reader is about to take.
//
// Concurrency is kept three ways:
// - a reader that finds more requests queued behind the one it took hands the reader role on
//   (one follower wakes and reads) before it serves its own, unless its own is a quick one;
// - while requests come from more than one thread of the callers (within `mixed_ns`), there
//   is no reader role: every worker reads /dev/fuse in turn, as in libfuse's loop, so callers
//   running in parallel are served in parallel (and so it always is with spin_us 0);
// - one follower, the watchdog, ticks every `tick` while requests flow; when a single request
//   has held the reader for a whole tick, it takes the reader role, so a slow request never
//   holds up the others for longer than about two ticks.
//
// Spinning does not always pay. When each request keeps its caller asleep long enough for the
// caller's CPU to go idle (a 4 KiB write with its journal copy, on a VM whose idle CPUs halt at
// once), the reply's wake-up of the caller costs more than the spin saves, and the caller is
// served faster by workers that sleep in read() as libfuse's do (caller and worker then take
// turns on one CPU). So the loop measures: requests served per second with spinning and
// without, `probe_ns` each, keeps the faster for `keep_ns`, and measures again (afresh after
// a pause or while callers run in parallel, which always read in parallel).
#define _GNU_SOURCE  // sem_clockwait
#define FUSE_USE_VERSION 314
#include <fuse3/fuse_lowlevel.h>
#include <linux/fuse.h>

#include <errno.h>
#include <poll.h>
#include <pthread.h>
#include <semaphore.h>
#include <signal.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <time.h>
#include <unistd.h>

#include "CElasticFUSEInit.h"

enum { tick_ns = 1000000, quiet_ticks = 3, mixed_ns = 20000000 };
// Spinning measured against not spinning (see the top of the file).
enum { probe_ns = 30000000, keep_ns = 300000000, probe_min = 100, pause_ns = 5000000 };
enum { measure_spin, measure_without, keep_faster };

struct loop {
    struct fuse_session *se;
    int fd;    // /dev/fuse
    int wake;  // eventfd, written once at exit: wakes a reader asleep in poll
    uint64_t spin_ns;
    pthread_mutex_t lock;
    pthread_cond_t followers;
    sem_t finished;
    int exiting;
    int error;
    int reader;           // a thread holds the reader role...
    int busy;             // ...and is serving the request it read
    uint64_t generation;  // changes whenever the reader role changes hands
    uint64_t received;    // requests read so far
    int watchdog;         // a follower is timing the reader
    uint32_t last_pid;    // the caller thread of the last request
    uint64_t mixed_until; // requests from several caller threads were seen until then
    int spin_off;         // spinning does not pay now: every worker reads (as with spin 0)
    int phase;            // measure_spin, measure_without or keep_faster
    uint64_t phase_start, phase_end, phase_received, last_request;
    uint64_t spin_served, spin_took;  // what measure_spin saw
};

static uint64_t monotonic_ns(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (uint64_t)t.tv_sec * 1000000000u + (uint64_t)t.tv_nsec;
}

// Whether every worker reads /dev/fuse now: while callers run in parallel, and always without
// spinning (spin=0: libfuse's loop exactly).
static int all_read(const struct loop *l) {
    return l->spin_ns == 0 || l->spin_off || monotonic_ns() < l->mixed_until;
}

static void start_phase(struct loop *l, int phase, int spin_off, uint64_t now) {
    if (spin_off && !l->spin_off) pthread_cond_broadcast(&l->followers);  // every follower reads
    l->spin_off = spin_off;
    l->phase = phase;
    l->phase_start = now;
    l->phase_end = now + (phase == keep_faster ? keep_ns : probe_ns);
    l->phase_received = l->received;
}

// Called with the lock held for each request received: moves the measurement on.
static void measure(struct loop *l, uint64_t now) {
    if (l->spin_ns == 0) return;
    int restart = now < l->mixed_until || now - l->last_request > pause_ns;
    l->last_request = now;
    if (restart) {
        start_phase(l, measure_spin, 0, now);
        return;
    }
    if (now < l->phase_end) return;
    uint64_t served = l->received - l->phase_received, took = now - l->phase_start;
    switch (l->phase) {
    case measure_spin:
        l->spin_served = served;
        l->spin_took = took;
        start_phase(l, measure_without, 1, now);
        break;
    case measure_without: {
        // Off only when clearly faster without (by 15 %: the mix of requests differs from one
        // measurement to the next), over enough requests each way.
        int off = served >= probe_min && l->spin_served >= probe_min &&
                  (double)served * (double)l->spin_took > 1.15 * (double)l->spin_served * (double)took;
        start_phase(l, keep_faster, off, now);
        break;
    }
    default: start_phase(l, measure_spin, 0, now);
    }
}

// Notes the caller of the request in `buf`; returns whether callers run in parallel now.
static int callers_in_parallel(struct loop *l, const struct fuse_buf *buf, uint64_t now) {
    const struct fuse_in_header *in = buf->mem;
    if (buf->flags & FUSE_BUF_IS_FD || buf->size < sizeof(*in)) return now < l->mixed_until;
    // (FORGETs and the kernel's own requests carry no caller.)
    if (in->pid != 0 && in->opcode != FUSE_FORGET && in->opcode != FUSE_BATCH_FORGET) {
        if (l->last_pid != 0 && in->pid != l->last_pid) l->mixed_until = now + mixed_ns;
        l->last_pid = in->pid;
    }
    return now < l->mixed_until;
}

static void cpu_relax(void) {
#if defined(__x86_64__) || defined(__i386__)
    __builtin_ia32_pause();
#elif defined(__aarch64__)
    __asm__ volatile("yield");
#endif
}

static int request_queued(int fd) {
    struct pollfd p = {fd, POLLIN, 0};
    return poll(&p, 1, 0) > 0;
}

// The reader's wait for a request on /dev/fuse: polls it for spin_ns, then sleeps in poll.
// Returns 1 when the device is readable (a request, or an error the read reports), 0 when
// woken for exit, a negative errno if poll fails.
static int await_request(struct loop *l) {
    if (l->spin_ns) {
        uint64_t until = monotonic_ns() + l->spin_ns;
        do {
            if (request_queued(l->fd)) return 1;
            cpu_relax();
        } while (monotonic_ns() < until);
    }
    struct pollfd p[2] = {{l->fd, POLLIN, 0}, {l->wake, POLLIN, 0}};
    for (;;) {
        int n = poll(p, 2, -1);
        if (n < 0 && errno == EINTR) continue;
        if (n < 0) return -errno;
        if (p[1].revents) return 0;
        if (p[0].revents) return 1;
    }
}

// Called with the lock held when a follower has nothing to do but wait. The first one to wait
// becomes the watchdog while requests flow; the rest sleep until signalled.
static void follow(struct loop *l) {
    if (l->watchdog) {
        pthread_cond_wait(&l->followers, &l->lock);
        return;
    }
    l->watchdog = 1;
    uint64_t seen = l->received;
    int quiet = 0;
    // (Not while callers run in parallel: then every worker reads.)
    while (l->reader && !l->exiting && quiet < quiet_ticks && !all_read(l)) {
        struct timespec until;
        clock_gettime(CLOCK_MONOTONIC, &until);
        until.tv_nsec += tick_ns;
        if (until.tv_nsec >= 1000000000) {
            until.tv_sec += 1;
            until.tv_nsec -= 1000000000;
        }
        if (pthread_cond_timedwait(&l->followers, &l->lock, &until) != ETIMEDOUT) continue;
        if (l->received != seen) {
            seen = l->received;
            quiet = 0;
        } else if (l->reader && l->busy) {
            // One request has held the reader for a whole tick: take the reader role.
            l->reader = 0;
            l->busy = 0;
            l->generation++;
        } else {
            quiet++;
        }
    }
    l->watchdog = 0;  // (no requests for a while: the next one that finds no watchdog wakes one)
    if (l->reader && !l->exiting && !all_read(l)) pthread_cond_wait(&l->followers, &l->lock);
}

static void finish(struct loop *l, int res) {
    if (!l->exiting) {
        l->exiting = 1;
        if (res < 0) l->error = res;
        pthread_cond_broadcast(&l->followers);
        sem_post(&l->finished);
    }
}

// Requests that are answered from memory or with a system call or two: a reader that took one
// serves it before it reads again, whatever is queued behind (the watchdog covers the rare one
// that is slow).
static int quick(const struct fuse_buf *buf) {
    const struct fuse_in_header *in = buf->mem;
    if (buf->flags & FUSE_BUF_IS_FD || buf->size < sizeof(*in)) return 0;
    switch (in->opcode) {
    case FUSE_FORGET:
    case FUSE_BATCH_FORGET:
    case FUSE_INTERRUPT:
    case FUSE_GETATTR:
    case FUSE_LOOKUP:
    case FUSE_FLUSH:
    case FUSE_RELEASE:
    case FUSE_RELEASEDIR:
    case FUSE_OPENDIR:
    case FUSE_GETXATTR:
    case FUSE_ACCESS:
    case FUSE_STATFS: return 1;
    default: return 0;
    }
}

static void free_buffer(void *buf) { free(((struct fuse_buf *)buf)->mem); }

// A blocking read of the next request, as libfuse's loop does it: the kernel wakes one waiting
// thread per request. The only point where a worker can be cancelled (at exit): the reader
// reads here too, as the request its poll saw may be gone (taken by a worker still reading
// in parallel, or its caller killed) and the read then waits.
static int receive(struct loop *l, struct fuse_buf *buf) {
    int res;
    pthread_cleanup_push(free_buffer, buf);
    pthread_setcancelstate(PTHREAD_CANCEL_ENABLE, NULL);
    res = fuse_session_receive_buf(l->se, buf);
    pthread_setcancelstate(PTHREAD_CANCEL_DISABLE, NULL);
    pthread_cleanup_pop(0);
    return res;
}

static void *worker(void *arg) {
    struct loop *l = arg;
    struct fuse_buf buf;
    memset(&buf, 0, sizeof(buf));
    pthread_setcancelstate(PTHREAD_CANCEL_DISABLE, NULL);
    pthread_mutex_lock(&l->lock);
    while (!l->exiting) {
        int parallel = all_read(l);
        uint64_t lead = 0;  // the generation of the reader role this thread holds
        if (!parallel) {
            if (l->reader) {
                follow(l);
                continue;
            }
            l->reader = 1;
            l->busy = 0;
            lead = ++l->generation;
        }
        pthread_mutex_unlock(&l->lock);
        int ready = lead ? await_request(l) : 1;
        int res = ready > 0 ? receive(l, &buf) : ready;
        pthread_mutex_lock(&l->lock);
        int leading = lead && l->generation == lead;
        if (res == -EINTR || res == -EAGAIN) {
            if (leading) l->reader = 0;
            continue;
        }
        if (res <= 0 || fuse_session_exited(l->se)) {
            finish(l, res);
            break;
        }
        l->received++;
        uint64_t now = monotonic_ns();
        int was_parallel = now < l->mixed_until;
        int now_parallel = callers_in_parallel(l, &buf, now);
        measure(l, now);
        if (now_parallel && !was_parallel) {
            pthread_cond_broadcast(&l->followers);  // every follower goes to read
        }
        if (leading) {
            if (now_parallel || l->spin_off || (!quick(&buf) && request_queued(l->fd))) {
                // More are waiting, or callers run in parallel: another thread reads while
                // this one serves.
                l->reader = 0;
                l->generation++;
                leading = 0;
                pthread_cond_signal(&l->followers);
            } else {
                l->busy = 1;
                if (!l->watchdog) pthread_cond_signal(&l->followers);  // one follower times it
            }
        }
        pthread_mutex_unlock(&l->lock);
        fuse_session_process_buf(l->se, &buf);
        pthread_mutex_lock(&l->lock);
        if (leading && l->generation == lead) {
            // (Given up and taken again at once, the lock held: the next request is this
            // thread's unless callers now run in parallel.)
            l->reader = 0;
            l->busy = 0;
        }
    }
    pthread_mutex_unlock(&l->lock);
    free(buf.mem);
    return NULL;
}

int CElasticFUSEInit_loop(struct fuse_session *se, unsigned threads, unsigned spin_us) {
    struct loop l;
    memset(&l, 0, sizeof(l));
    l.se = se;
    l.fd = fuse_session_fd(se);
    l.spin_ns = (uint64_t)spin_us * 1000u;
    l.wake = eventfd(0, EFD_CLOEXEC);
    if (l.wake < 0) return -errno;
    pthread_condattr_t attr;
    pthread_condattr_init(&attr);
    pthread_condattr_setclock(&attr, CLOCK_MONOTONIC);
    pthread_cond_init(&l.followers, &attr);
    pthread_condattr_destroy(&attr);
    pthread_mutex_init(&l.lock, NULL);
    sem_init(&l.finished, 0, 0);
    if (threads < 1) threads = 1;
    pthread_t *pool = calloc(threads, sizeof(pthread_t));
    unsigned started = 0;
    if (pool) {
        // Workers block every signal: SIGTERM and friends reach the thread waiting below.
        sigset_t all, old;
        sigfillset(&all);
        pthread_sigmask(SIG_BLOCK, &all, &old);
        while (started < threads && pthread_create(&pool[started], NULL, worker, &l) == 0) started++;
        pthread_sigmask(SIG_SETMASK, &old, NULL);
    }
    int err = started ? 0 : -ENOMEM;
    // Until a worker finishes (unmount) or a signal handler marks the session exited; the
    // timeout covers a signal taken by a thread other than this one.
    while (started && !fuse_session_exited(se)) {
        struct timespec until;
        clock_gettime(CLOCK_MONOTONIC, &until);
        until.tv_sec += 1;
        if (sem_clockwait(&l.finished, CLOCK_MONOTONIC, &until) == 0) break;
    }
    pthread_mutex_lock(&l.lock);
    finish(&l, 0);
    pthread_mutex_unlock(&l.lock);
    uint64_t one = 1;
    if (write(l.wake, &one, sizeof(one)) < 0) { /* the reader also sees the session end */
    }
    // Workers asleep in a parallel read leave it by cancellation (the only point where they
    // allow it); the others see `exiting`.
    for (unsigned i = 0; i < started; i++) pthread_cancel(pool[i]);
    for (unsigned i = 0; i < started; i++) pthread_join(pool[i], NULL);
    free(pool);
    close(l.wake);
    sem_destroy(&l.finished);
    pthread_cond_destroy(&l.followers);
    pthread_mutex_destroy(&l.lock);
    return err ? err : l.error;
}
