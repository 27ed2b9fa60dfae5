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
    ELASTIC_CLOCK_MONOTONIC_RAW = 5, /* TSC ticks at the firmware-given rate, never slewed: the
                                        only clock marked trusted (with SEV-SNP Secure TSC) */
};

enum elastic_time_source {
    ELASTIC_SOURCE_CLOCK_GETTIME = 1, /* the guest kernel's clocks: host-influenced */
    ELASTIC_SOURCE_SECURE_TSC = 2,    /* SEV-SNP Secure TSC, kernel clock source "tsc": trusted */
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
/* Stopwatches, hash streams and key operations are handles owned by the process that made them:
 * a handle that was closed, never existed, or belongs to another process is EBADF. A handle
 * lives until it is closed or its process exits. At most ELASTIC_HANDLES_PER_PROCESS open
 * handles per process (then EMFILE), ELASTIC_HANDLES_PER_UID per uid and ELASTIC_HANDLES_MAX in
 * all (then EMFILE); data a handle buffers (Ed25519 messages) counts against
 * ELASTIC_BUFFERED_PER_UID bytes per uid (then EDQUOT). */
#define ELASTIC_HANDLES_PER_PROCESS 64u
#define ELASTIC_HANDLES_PER_UID 256u
#define ELASTIC_HANDLES_MAX 4096u
#define ELASTIC_BUFFERED_PER_UID (8u << 20)

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

enum elastic_attest_platform {
    ELASTIC_PLATFORM_SEV_SNP = 1,           /* ATTESTATION_REPORT, 1184 bytes, signed by the VCEK */
    ELASTIC_PLATFORM_SEV_SNP_SIMULATOR = 2, /* same layout, signed by the simulator's key: not evidence */
    ELASTIC_PLATFORM_TDX = 3,               /* TDREPORT, 1024 bytes, MAC'ed for this platform only:
                                             * turn it into a Quote (configfs-tsm) for a remote verifier */
};
#define ELASTIC_REPORT_MAX 4000u

/* ELASTIC_IOC_ATTEST: a hardware attestation report carrying the caller's 64 bytes of report
 * data (SEV-SNP: the 1184-byte ATTESTATION_REPORT, signed by the VCEK; TDX: the 1024-byte
 * TDREPORT). EOPNOTSUPP where the platform has none (plain Linux). 4080 bytes. */
struct elastic_attest {
    uint32_t version;       /* in */
    uint32_t platform;      /* out: enum elastic_attest_platform */
    uint32_t report_length; /* out */
    uint32_t reserved0;     /* zero */
    uint8_t report_data[64];            /* in */
    uint8_t report[ELASTIC_REPORT_MAX]; /* out: the first report_length bytes */
};

#define ELASTIC_EVIDENCE_MAX 15296u

/* ELASTIC_IOC_EVIDENCE: what a remote verifier needs, for the caller's 64 bytes of report data.
 * SEV-SNP (platform 1, simulator 2): the ATTESTATION_REPORT and the host's certificate table
 * (from SNP_GET_EXT_REPORT, or configfs-tsm's auxblob: 24-byte entries GUID, offset u32 LE,
 * length u32 LE, ended by an all-zero entry, offsets from the start of the table;
 * certs_length 0 when the host supplies none: give the verifier the VCEK yourself). TDX: a
 * Quote from configfs-tsm (platform 4), or the TDREPORT (3) where the kernel has none. `data`
 * holds the report (report_length bytes) then the table (certs_length bytes). E2BIG when they
 * do not fit; EOPNOTSUPP where the platform has no attestation. 15376 bytes. */
struct elastic_evidence {
    uint32_t version;       /* in */
    uint32_t platform;      /* out: enum elastic_attest_platform, or 4 for a TDX Quote */
    uint32_t report_length; /* out */
    uint32_t certs_length;  /* out */
    uint8_t report_data[64];            /* in */
    uint8_t data[ELASTIC_EVIDENCE_MAX]; /* out: report, then certificate table */
};

/* ---- Key store -------------------------------------------------------------------------- */
/* Named keys kept inside the store (encrypted under the store's master key, in no file of the
 * mounted tree). Every uid has its own name space: a name is 1..63 bytes of [A-Za-z0-9._-] and
 * names the caller's own key. "UID:NAME" names another uid's key: root may use it, any other
 * caller gets EACCES whether or not it exists (nothing is told about other users' keys). */

#define ELASTIC_KEY_NAME_MAX 64u /* with the terminating NUL */
#define ELASTIC_KEY_DATA_MAX 4096u

enum elastic_key_type {
    ELASTIC_KEY_AES256 = 1,      /* AES-256-GCM (streamed, see elastic_keyop) */
    ELASTIC_KEY_HMAC_SHA256 = 2, /* HMAC-SHA-256; 32 bytes when created, 16..64 when imported */
    ELASTIC_KEY_RSA = 3,         /* 2048..4096 bits, e = 65537 when created */
    ELASTIC_KEY_EC_P256 = 4,     /* ECDSA */
    ELASTIC_KEY_EC_P384 = 5,     /* ECDSA */
    ELASTIC_KEY_ED25519 = 6,
};

#define ELASTIC_KEY_EXPORTABLE (1u << 0) /* EXPORT may return the private or secret key */
#define ELASTIC_KEY_LIST_ALL (1u << 1)   /* LIST (root only): every uid's keys, not only the caller's */

/* Quotas: a uid (other than root) may keep ELASTIC_KEYS_PER_UID keys of ELASTIC_KEY_BYTES_PER_UID
 * bytes of key material in all (then EDQUOT); the store holds at most ELASTIC_KEYS_MAX keys
 * (then ENOSPC). */
#define ELASTIC_KEYS_PER_UID 64u
#define ELASTIC_KEY_BYTES_PER_UID (64u << 10)
#define ELASTIC_KEYS_MAX 1024u

enum elastic_key_op {
    ELASTIC_KEY_CREATE = 1, /* in: name, type, bits (RSA only), flags */
    ELASTIC_KEY_IMPORT = 2, /* in: name, type, flags, length, data: raw secret (AES: 32 bytes,
                             * HMAC: 16..64) or an unencrypted private key, PEM or DER */
    ELASTIC_KEY_INFO = 3,   /* in: name; out: type, bits, flags, owner, created */
    ELASTIC_KEY_LIST = 4,   /* in: index, flags (ELASTIC_KEY_LIST_ALL); out: name and the INFO
                             * fields of the index-th of the caller's keys (with LIST_ALL: of all
                             * keys, in owner then name order); ENOENT past the last */
    ELASTIC_KEY_PUBLIC = 5, /* in: name; out: length, data: the public key as PEM (asymmetric keys) */
    ELASTIC_KEY_EXPORT = 6, /* in: name; out: length, data: PKCS#8 PEM or the raw secret; EPERM
                             * unless the key was made ELASTIC_KEY_EXPORTABLE */
    ELASTIC_KEY_DELETE = 7, /* in: name */
};

/* ELASTIC_IOC_KEY: manage the key store. Errors: ENOENT no such key, EEXIST name taken, EACCES
 * another uid's key, EPERM not exportable, EROFS read-only mount, ENOSPC store full, EDQUOT over
 * the uid's quota, EAGAIN too many slow requests (key generation) of this uid in flight. 4208 bytes. */
struct elastic_key {
    uint32_t version;  /* in */
    uint32_t op;       /* in: enum elastic_key_op */
    uint32_t type;     /* in on CREATE/IMPORT, out on INFO/LIST: enum elastic_key_type */
    uint32_t flags;    /* in on CREATE/IMPORT, out on INFO/LIST: ELASTIC_KEY_EXPORTABLE; in on LIST: ELASTIC_KEY_LIST_ALL */
    uint32_t bits;     /* in on CREATE of RSA; out on INFO/LIST: key size in bits */
    uint32_t owner;    /* out on INFO/LIST: the uid the key belongs to */
    uint32_t index;    /* in on LIST */
    uint32_t length;   /* in on IMPORT, out on PUBLIC/EXPORT: bytes of data */
    uint64_t created;  /* out on INFO/LIST: seconds since the epoch */
    uint64_t reserved; /* zero */
    char name[ELASTIC_KEY_NAME_MAX]; /* in (out on LIST), NUL-terminated, zero-padded */
    uint8_t data[ELASTIC_KEY_DATA_MAX];
};

/* ---- Operations with stored keys (streamed) --------------------------------------------- */

enum elastic_keyop_operation {
    ELASTIC_OP_ENCRYPT = 1, /* AES-256 key: the STREAM construction over AES-256-GCM */
    ELASTIC_OP_DECRYPT = 2,
    ELASTIC_OP_SIGN = 3,    /* RSA, EC or Ed25519 key */
    ELASTIC_OP_VERIFY = 4,
    ELASTIC_OP_HMAC = 5,    /* HMAC-SHA-256 key */
};

enum elastic_sign_scheme {
    ELASTIC_SIGN_DEFAULT = 0,   /* RSA: PSS; EC: ECDSA; Ed25519: Ed25519 */
    ELASTIC_SIGN_RSA_PSS = 1,   /* MGF1 with the message digest, salt length = digest length */
    ELASTIC_SIGN_RSA_PKCS1 = 2, /* PKCS #1 v1.5 */
    ELASTIC_SIGN_ECDSA = 3,     /* DER-encoded (r, s) */
    ELASTIC_SIGN_ED25519 = 4,   /* pure Ed25519; the message is buffered, at most 1 MiB */
};

enum elastic_keyop_step {
    ELASTIC_STEP_INIT = 1,   /* in: operation, name, scheme/hash (SIGN, VERIFY), data (below); out: handle */
    ELASTIC_STEP_UPDATE = 2, /* in: handle, length, data */
    ELASTIC_STEP_FINAL = 3,  /* in: handle, length, data; the handle is closed */
};

#define ELASTIC_STREAM_SALT 32u    /* the salt that starts an encrypted stream */
#define ELASTIC_STREAM_SEGMENT 4096u

/* ELASTIC_IOC_KEYOP: encrypt, decrypt, sign, verify or HMAC through a handle (same rules as the
 * other handles). The data of each step:
 *   ENCRYPT  INIT in: AAD (0..4096 bytes); out: the stream's 32-byte salt.
 *            UPDATE in: exactly 4096 bytes of plaintext; FINAL in: 0..4096 (the last segment);
 *            out: as many bytes of ciphertext, and its 16-byte tag.
 *   DECRYPT  INIT in: salt (32 bytes) then the AAD. UPDATE/FINAL in: one segment's ciphertext
 *            and tag, as ENCRYPT gave them; out: its plaintext, released only once the tag
 *            verifies. EBADMSG (and the handle is closed) if it does not.
 *   SIGN, VERIFY, HMAC  UPDATE in: message bytes. FINAL in: more message bytes (SIGN, HMAC)
 *            or the signature (VERIFY); out: the signature or the 32-byte MAC (VERIFY: nothing;
 *            0 if the signature is valid, EBADMSG if not).
 * 4208 bytes. */
struct elastic_keyop {
    uint32_t version;   /* in */
    uint32_t step;      /* in: enum elastic_keyop_step */
    uint32_t operation; /* in on INIT: enum elastic_keyop_operation */
    uint32_t scheme;    /* in on INIT for SIGN/VERIFY: enum elastic_sign_scheme */
    uint32_t hash;      /* in on INIT for SIGN/VERIFY with RSA/EC: enum elastic_hash_algorithm,
                         * 0 = SHA-256 (SHA-384 for P-384 keys); must be 0 for Ed25519 */
    uint32_t length;    /* in and out: bytes of data */
    uint64_t handle;    /* out on INIT, in otherwise */
    char name[ELASTIC_KEY_NAME_MAX]; /* in on INIT */
    uint8_t tag[16];    /* ENCRYPT out, DECRYPT in: the segment's GCM tag */
    uint8_t data[ELASTIC_KEY_DATA_MAX];
};

#define ELASTIC_IOC_CLOCK  _IOWR(ELASTIC_IOC_MAGIC, 1, struct elastic_clock)
#define ELASTIC_IOC_RANDOM _IOWR(ELASTIC_IOC_MAGIC, 2, struct elastic_random)
#define ELASTIC_IOC_DERIVE _IOWR(ELASTIC_IOC_MAGIC, 3, struct elastic_derive)
#define ELASTIC_IOC_STOPWATCH _IOWR(ELASTIC_IOC_MAGIC, 4, struct elastic_stopwatch)
#define ELASTIC_IOC_HASH   _IOWR(ELASTIC_IOC_MAGIC, 5, struct elastic_hash)
#define ELASTIC_IOC_ATTEST _IOWR(ELASTIC_IOC_MAGIC, 6, struct elastic_attest)
#define ELASTIC_IOC_KEY    _IOWR(ELASTIC_IOC_MAGIC, 7, struct elastic_key)
#define ELASTIC_IOC_KEYOP  _IOWR(ELASTIC_IOC_MAGIC, 8, struct elastic_keyop)
#define ELASTIC_IOC_EVIDENCE _IOWR(ELASTIC_IOC_MAGIC, 9, struct elastic_evidence)

#endif /* ELASTIC_IOCTL_H */
