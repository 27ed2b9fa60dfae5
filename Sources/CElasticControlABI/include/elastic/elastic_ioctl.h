/*
 * ELASTIC control ABI: ioctls on /<mount>/.elastic (the control file at the root of an ELASTIC
 * mount). The single source of truth for the daemon, the elastic CLI and C clients.
 * docs/control-abi.md documents each command, its errors and limits.
 *
 * Rules: fixed-size structs, no pointers, _IOWR encoding (FUSE passes only such restricted
 * ioctls), a version field first (ELASTIC_ABI_VERSION), reserved fields must be zero.
 * Errors: unknown command ENOTTY; wrong version, bad field or reserved bits EINVAL.
 */
#ifndef ELASTIC_IOCTL_H
#define ELASTIC_IOCTL_H

#include <stdint.h>
#include <linux/ioctl.h>

#define ELASTIC_ABI_VERSION 1u
#define ELASTIC_IOC_MAGIC 'E'
#define ELASTIC_CONTROL_NAME ".elastic"

/* ---- Clock ---------------------------------------------------------------------------- */

enum elastic_clock_id {
    ELASTIC_CLOCK_REALTIME = 0,
    ELASTIC_CLOCK_MONOTONIC = 1,
    ELASTIC_CLOCK_BOOTTIME = 2,
    ELASTIC_CLOCK_PROCESS_CPU = 3, /* CPU time of the calling process */
    ELASTIC_CLOCK_THREAD_CPU = 4,  /* CPU time of the calling thread */
};

enum elastic_time_source {
    ELASTIC_SOURCE_CLOCK_GETTIME = 1, /* the guest kernel's clocks: host-influenced */
    ELASTIC_SOURCE_SECURE_TSC = 2,    /* SEV-SNP Secure TSC: trusted */
};

#define ELASTIC_TIME_TRUSTED (1u << 0)

/* ELASTIC_IOC_CLOCK: one reading of one clock. 104 bytes. */
struct elastic_clock {
    uint32_t version;       /* in: ELASTIC_ABI_VERSION */
    uint32_t clock;         /* in: enum elastic_clock_id */
    uint32_t flags;         /* out: ELASTIC_TIME_TRUSTED */
    uint32_t source;        /* out: enum elastic_time_source */
    int64_t seconds;        /* out */
    uint32_t nanoseconds;   /* out: 0..999999999 */
    uint32_t resolution_ns; /* out: the clock's resolution */
    int32_t utc_offset;     /* out: seconds east of UTC (daemon's local time zone) */
    uint32_t reserved0;     /* zero */
    char timezone[32];      /* out: time zone abbreviation, NUL-terminated */
    uint64_t reserved[4];   /* zero */
};

/* ---- Random ----------------------------------------------------------------------------- */

#define ELASTIC_RANDOM_MAX 4096u

/* ELASTIC_IOC_RANDOM: `length` bytes from OpenSSL's CSPRNG. 4112 bytes. */
struct elastic_random {
    uint32_t version;  /* in */
    uint32_t length;   /* in: 1..ELASTIC_RANDOM_MAX */
    uint64_t reserved; /* zero */
    uint8_t data[ELASTIC_RANDOM_MAX]; /* out: the first `length` bytes */
};

/* ---- Derive ----------------------------------------------------------------------------- */

#define ELASTIC_LABEL_MAX 256u
#define ELASTIC_DERIVED_KEY_MAX 64u

/* ELASTIC_IOC_DERIVE: a key derived from the store's sealed master key, bound to the label and
 * to the caller's uid, separated from every filesystem key. Same label and uid: same key across
 * remounts and reboots. 352 bytes. */
struct elastic_derive {
    uint32_t version;      /* in */
    uint32_t key_length;   /* in: 16..ELASTIC_DERIVED_KEY_MAX */
    uint32_t label_length; /* in: 1..ELASTIC_LABEL_MAX */
    uint32_t reserved0;    /* zero */
    uint8_t label[ELASTIC_LABEL_MAX];     /* in: the first label_length bytes; the rest zero */
    uint8_t key[ELASTIC_DERIVED_KEY_MAX]; /* out: the first key_length bytes */
    uint64_t reserved[2];  /* zero */
};

/* ---- Handles -------------------------------------------------------------------------- */
/* Stopwatches and hash streams are handles owned by the process that made them: a handle that
 * was closed, never existed, or belongs to another process is EBADF. At most
 * ELASTIC_HANDLES_PER_PROCESS open handles per process (then EMFILE). */
#define ELASTIC_HANDLES_PER_PROCESS 64u

/* ---- Stopwatch ------------------------------------------------------------------------ */

enum elastic_stopwatch_op {
    ELASTIC_STOPWATCH_START = 1, /* out: handle */
    ELASTIC_STOPWATCH_READ = 2,  /* in: handle; out: elapsed_ns */
    ELASTIC_STOPWATCH_STOP = 3,  /* in: handle; out: elapsed_ns; the handle is closed */
};

/* ELASTIC_IOC_STOPWATCH: elapsed monotonic time since START. 48 bytes. */
struct elastic_stopwatch {
    uint32_t version;   /* in */
    uint32_t op;        /* in: enum elastic_stopwatch_op */
    uint64_t handle;    /* out on START, in otherwise */
    int64_t elapsed_ns; /* out */
    uint32_t flags;     /* out: ELASTIC_TIME_TRUSTED */
    uint32_t reserved0; /* zero */
    uint64_t reserved[2];
};

/* ---- Hash (streamed) ------------------------------------------------------------------- */

enum elastic_hash_algorithm { ELASTIC_HASH_SHA256 = 1, ELASTIC_HASH_SHA384 = 2, ELASTIC_HASH_SHA512 = 3 };
enum elastic_hash_op {
    ELASTIC_HASH_INIT = 1,   /* in: algorithm; out: handle */
    ELASTIC_HASH_UPDATE = 2, /* in: handle, length, data */
    ELASTIC_HASH_FINAL = 3,  /* in: handle; out: length = digest size, data = digest; the handle is closed */
};
#define ELASTIC_HASH_CHUNK 4096u

/* ELASTIC_IOC_HASH: SHA-2 over any amount of data, ELASTIC_HASH_CHUNK bytes per call. 4128 bytes. */
struct elastic_hash {
    uint32_t version;   /* in */
    uint32_t op;        /* in: enum elastic_hash_op */
    uint32_t algorithm; /* in on INIT: enum elastic_hash_algorithm */
    uint32_t length;    /* in on UPDATE: 0..ELASTIC_HASH_CHUNK; out on FINAL */
    uint64_t handle;    /* out on INIT, in otherwise */
    uint64_t reserved;  /* zero */
    uint8_t data[ELASTIC_HASH_CHUNK];
};

/* ---- Attestation ------------------------------------------------------------------------ */

enum elastic_attest_platform { ELASTIC_PLATFORM_SEV_SNP = 1, ELASTIC_PLATFORM_SEV_SNP_SIMULATOR = 2 };
#define ELASTIC_REPORT_MAX 4000u

/* ELASTIC_IOC_ATTEST: a hardware attestation report carrying the caller's 64 bytes of report
 * data (SEV-SNP: the 1184-byte ATTESTATION_REPORT, signed by the VCEK). EOPNOTSUPP where the
 * platform has none (plain Linux). 4080 bytes. */
struct elastic_attest {
    uint32_t version;       /* in */
    uint32_t platform;      /* out: enum elastic_attest_platform */
    uint32_t report_length; /* out */
    uint32_t reserved0;     /* zero */
    uint8_t report_data[64];            /* in */
    uint8_t report[ELASTIC_REPORT_MAX]; /* out: the first report_length bytes */
};

#define ELASTIC_IOC_CLOCK  _IOWR(ELASTIC_IOC_MAGIC, 1, struct elastic_clock)
#define ELASTIC_IOC_RANDOM _IOWR(ELASTIC_IOC_MAGIC, 2, struct elastic_random)
#define ELASTIC_IOC_DERIVE _IOWR(ELASTIC_IOC_MAGIC, 3, struct elastic_derive)
#define ELASTIC_IOC_STOPWATCH _IOWR(ELASTIC_IOC_MAGIC, 4, struct elastic_stopwatch)
#define ELASTIC_IOC_HASH   _IOWR(ELASTIC_IOC_MAGIC, 5, struct elastic_hash)
#define ELASTIC_IOC_ATTEST _IOWR(ELASTIC_IOC_MAGIC, 6, struct elastic_attest)

#endif /* ELASTIC_IOCTL_H */
