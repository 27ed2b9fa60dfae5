/* A C client of the ELASTIC control ABI beyond the clock: makes keys, signs and verifies,
 * encrypts and decrypts in segments, computes an HMAC, imports, exports and deletes keys, and
 * uses random, derive, stopwatch, hash and attest, all through ioctls on /<mount>/.elastic.
 *
 *   cc -O2 -I Sources/CElasticControlABI/include -o elastic-keys mount-helpers/examples/elastic-keys.c
 *   ./elastic-keys /secure OUTDIR < message   # writes OUTDIR/c-ed.pub and OUTDIR/c-ed.sig
 */
#include <elastic/elastic_ioctl.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <unistd.h>

static int ctl;

static void die(const char *what) {
    fprintf(stderr, "elastic-keys: %s: %s\n", what, strerror(errno));
    exit(1);
}

/* ELASTIC_IOC_KEY with op on name; returns 0 or -errno. */
static int key_op(struct elastic_key *k, uint32_t op, const char *name) {
    memset(k, 0, sizeof *k);
    k->version = ELASTIC_ABI_VERSION;
    k->op = op;
    if (name) strncpy(k->name, name, ELASTIC_KEY_NAME_MAX - 1);
    return ioctl(ctl, ELASTIC_IOC_KEY, k) == 0 ? 0 : -errno;
}

static void create(const char *name, uint32_t type) {
    struct elastic_key k;
    memset(&k, 0, sizeof k);
    k.version = ELASTIC_ABI_VERSION;
    k.op = ELASTIC_KEY_CREATE;
    k.type = type;
    strncpy(k.name, name, ELASTIC_KEY_NAME_MAX - 1);
    if (ioctl(ctl, ELASTIC_IOC_KEY, &k) != 0 && errno != EEXIST) die(name);
}

/* One keyop step. INIT takes the key name and operation; returns 0 or -errno. */
static int step(struct elastic_keyop *r, uint32_t step, uint64_t handle, uint32_t operation, const char *name,
                const void *data, uint32_t length, const uint8_t *tag) {
    memset(r, 0, sizeof *r);
    r->version = ELASTIC_ABI_VERSION;
    r->step = step;
    r->handle = handle;
    r->operation = operation;
    if (name) strncpy(r->name, name, ELASTIC_KEY_NAME_MAX - 1);
    r->length = length;
    if (length) memcpy(r->data, data, length);
    if (tag) memcpy(r->tag, tag, 16);
    return ioctl(ctl, ELASTIC_IOC_KEYOP, r) == 0 ? 0 : -errno;
}

/* Signs (or verifies `sig`) over msg[0..n) with key `name`, fed in ELASTIC_KEY_DATA_MAX pieces. */
static int sign_or_verify(const char *name, const uint8_t *msg, size_t n, uint8_t *sig, uint32_t *siglen, int verify) {
    static struct elastic_keyop r;
    if (step(&r, ELASTIC_STEP_INIT, 0, verify ? ELASTIC_OP_VERIFY : ELASTIC_OP_SIGN, name, NULL, 0, NULL)) die("INIT");
    uint64_t h = r.handle;
    for (size_t at = 0; at < n; at += ELASTIC_KEY_DATA_MAX) {
        uint32_t len = (uint32_t)(n - at < ELASTIC_KEY_DATA_MAX ? n - at : ELASTIC_KEY_DATA_MAX);
        if (step(&r, ELASTIC_STEP_UPDATE, h, 0, NULL, msg + at, len, NULL)) die("UPDATE");
    }
    int rc = step(&r, ELASTIC_STEP_FINAL, h, 0, NULL, verify ? sig : NULL, verify ? *siglen : 0, NULL);
    if (!verify && rc == 0) {
        memcpy(sig, r.data, r.length);
        *siglen = r.length;
    }
    return rc;
}

static void write_file(const char *dir, const char *name, const void *p, size_t n) {
    char path[4096];
    snprintf(path, sizeof path, "%s/%s", dir, name);
    FILE *f = fopen(path, "wb");
    if (!f || fwrite(p, 1, n, f) != n || fclose(f) != 0) die(path);
}

int main(int argc, char **argv) {
    if (argc != 3) {
        fprintf(stderr, "usage: %s MOUNTPOINT OUTDIR < message\n", argv[0]);
        return 2;
    }
    char path[4096];
    snprintf(path, sizeof path, "%s/%s", argv[1], ELASTIC_CONTROL_NAME);
    if ((ctl = open(path, O_RDONLY | O_CLOEXEC)) < 0) die(path);

    static uint8_t msg[1 << 20];
    size_t n = 0;
    ssize_t got;
    while (n < sizeof msg && (got = read(0, msg + n, sizeof msg - n)) > 0) n += (size_t)got;

    create("c-ed", ELASTIC_KEY_ED25519);
    create("c-aes", ELASTIC_KEY_AES256);
    create("c-mac", ELASTIC_KEY_HMAC_SHA256);

    static struct elastic_key k;
    for (uint32_t i = 0;; i++) {
        memset(&k, 0, sizeof k);
        k.version = ELASTIC_ABI_VERSION;
        k.op = ELASTIC_KEY_LIST;
        k.index = i;
        if (ioctl(ctl, ELASTIC_IOC_KEY, &k) != 0) {
            if (errno != ENOENT) die("LIST");
            break;
        }
        printf("key %s type=%u bits=%u owner=%u\n", k.name, k.type, k.bits, k.owner);
    }
    if (key_op(&k, ELASTIC_KEY_PUBLIC, "c-ed")) die("PUBLIC");
    write_file(argv[2], "c-ed.pub", k.data, k.length);

    uint8_t sig[512];
    uint32_t siglen = 0;
    if (sign_or_verify("c-ed", msg, n, sig, &siglen, 0)) die("SIGN");
    write_file(argv[2], "c-ed.sig", sig, siglen);
    printf("verify %s\n", sign_or_verify("c-ed", msg, n, sig, &siglen, 1) == 0 ? "ok" : "FAILED");
    sig[0] ^= 1;
    printf("tampered signature %s\n", sign_or_verify("c-ed", msg, n, sig, &siglen, 1) == -EBADMSG ? "refused" : "ACCEPTED");

    /* Encrypt in segments (all but the last exactly ELASTIC_STREAM_SEGMENT bytes), then decrypt. */
    static struct elastic_keyop r;
    static uint8_t ct[(1 << 20) + 4096], tags[(1 << 20) / ELASTIC_STREAM_SEGMENT + 1][16], back[1 << 20];
    uint8_t salt[ELASTIC_STREAM_SALT];
    if (step(&r, ELASTIC_STEP_INIT, 0, ELASTIC_OP_ENCRYPT, "c-aes", "aad", 3, NULL)) die("ENCRYPT INIT");
    uint64_t h = r.handle;
    memcpy(salt, r.data, sizeof salt);
    size_t segs = 0, at = 0;
    do {
        uint32_t len = (uint32_t)(n - at > ELASTIC_STREAM_SEGMENT ? ELASTIC_STREAM_SEGMENT : n - at);
        int last = at + len == n;
        if (step(&r, last ? ELASTIC_STEP_FINAL : ELASTIC_STEP_UPDATE, h, 0, NULL, msg + at, len, NULL)) die("ENCRYPT");
        memcpy(ct + at, r.data, len);
        memcpy(tags[segs++], r.tag, 16);
        at += len;
    } while (at < n);
    uint8_t init[ELASTIC_STREAM_SALT + 3];
    memcpy(init, salt, sizeof salt);
    memcpy(init + sizeof salt, "aad", 3);
    if (step(&r, ELASTIC_STEP_INIT, 0, ELASTIC_OP_DECRYPT, "c-aes", init, sizeof init, NULL)) die("DECRYPT INIT");
    h = r.handle;
    at = 0;
    for (size_t s = 0; s < segs; s++) {
        uint32_t len = (uint32_t)(n - at > ELASTIC_STREAM_SEGMENT ? ELASTIC_STREAM_SEGMENT : n - at);
        if (step(&r, s + 1 == segs ? ELASTIC_STEP_FINAL : ELASTIC_STEP_UPDATE, h, 0, NULL, ct + at, len, tags[s])) die("DECRYPT");
        memcpy(back + at, r.data, len);
        at += len;
    }
    printf("encrypt/decrypt %s (%zu segments)\n", n == 0 || memcmp(back, msg, n) == 0 ? "ok" : "MISMATCH", segs);

    if (step(&r, ELASTIC_STEP_INIT, 0, ELASTIC_OP_HMAC, "c-mac", NULL, 0, NULL)) die("HMAC INIT");
    if (step(&r, ELASTIC_STEP_FINAL, r.handle, 0, NULL, msg, (uint32_t)(n < ELASTIC_KEY_DATA_MAX ? n : ELASTIC_KEY_DATA_MAX), NULL)) die("HMAC");
    printf("hmac of the first %u bytes:", (unsigned)(n < ELASTIC_KEY_DATA_MAX ? n : ELASTIC_KEY_DATA_MAX));
    for (uint32_t i = 0; i < r.length; i++) printf("%02x", r.data[i]);
    printf("\n");

    /* Import a raw HMAC key as exportable, read it back, look at it, delete it. */
    memset(&k, 0, sizeof k);
    k.version = ELASTIC_ABI_VERSION;
    k.op = ELASTIC_KEY_IMPORT;
    k.type = ELASTIC_KEY_HMAC_SHA256;
    k.flags = ELASTIC_KEY_EXPORTABLE;
    strcpy(k.name, "c-imported");
    k.length = 20;
    memset(k.data, 0x0b, 20);
    if (ioctl(ctl, ELASTIC_IOC_KEY, &k) != 0) die("IMPORT");
    if (key_op(&k, ELASTIC_KEY_EXPORT, "c-imported")) die("EXPORT");
    int same = k.length == 20;
    for (uint32_t i = 0; i < k.length; i++) same &= k.data[i] == 0x0b;
    if (key_op(&k, ELASTIC_KEY_INFO, "c-imported")) die("INFO");
    printf("imported type=%u bits=%u exportable=%u export %s\n", k.type, k.bits, k.flags & ELASTIC_KEY_EXPORTABLE, same ? "ok" : "MISMATCH");
    if (key_op(&k, ELASTIC_KEY_EXPORT, "c-ed") != -EPERM) die("EXPORT of a non-exportable key");
    if (key_op(&k, ELASTIC_KEY_DELETE, "c-imported")) die("DELETE");
    printf("deleted: info %s\n", key_op(&k, ELASTIC_KEY_INFO, "c-imported") == -ENOENT ? "ENOENT" : "STILL THERE");

    /* The other services. */
    static struct elastic_random rnd;
    memset(&rnd, 0, sizeof rnd);
    rnd.version = ELASTIC_ABI_VERSION;
    rnd.length = 32;
    if (ioctl(ctl, ELASTIC_IOC_RANDOM, &rnd) != 0) die("RANDOM");
    struct elastic_derive d;
    memset(&d, 0, sizeof d);
    d.version = ELASTIC_ABI_VERSION;
    d.key_length = 32;
    d.label_length = 6;
    memcpy(d.label, "app/db", 6);
    if (ioctl(ctl, ELASTIC_IOC_DERIVE, &d) != 0) die("DERIVE");
    printf("derived app/db:");
    for (int i = 0; i < 32; i++) printf("%02x", d.key[i]);
    printf("\n");
    struct elastic_stopwatch sw;
    memset(&sw, 0, sizeof sw);
    sw.version = ELASTIC_ABI_VERSION;
    sw.op = ELASTIC_STOPWATCH_START;
    if (ioctl(ctl, ELASTIC_IOC_STOPWATCH, &sw) != 0) die("STOPWATCH START");
    usleep(20000);
    uint64_t sh = sw.handle;
    memset(&sw, 0, sizeof sw);
    sw.version = ELASTIC_ABI_VERSION;
    sw.op = ELASTIC_STOPWATCH_STOP;
    sw.handle = sh;
    if (ioctl(ctl, ELASTIC_IOC_STOPWATCH, &sw) != 0) die("STOPWATCH STOP");
    printf("stopwatch %s\n", sw.elapsed_ns >= 20000000 && sw.elapsed_ns < 30000000000ULL ? "ok" : "WRONG");
    static struct elastic_hash hs;
    memset(&hs, 0, sizeof hs);
    hs.version = ELASTIC_ABI_VERSION;
    hs.op = ELASTIC_HASH_INIT;
    hs.algorithm = ELASTIC_HASH_SHA256;
    if (ioctl(ctl, ELASTIC_IOC_HASH, &hs) != 0) die("HASH INIT");
    uint64_t hh = hs.handle;
    for (size_t off = 0; off < n; off += ELASTIC_HASH_CHUNK) {
        memset(&hs, 0, sizeof hs);
        hs.version = ELASTIC_ABI_VERSION;
        hs.op = ELASTIC_HASH_UPDATE;
        hs.handle = hh;
        hs.length = (uint32_t)(n - off < ELASTIC_HASH_CHUNK ? n - off : ELASTIC_HASH_CHUNK);
        memcpy(hs.data, msg + off, hs.length);
        if (ioctl(ctl, ELASTIC_IOC_HASH, &hs) != 0) die("HASH UPDATE");
    }
    memset(&hs, 0, sizeof hs);
    hs.version = ELASTIC_ABI_VERSION;
    hs.op = ELASTIC_HASH_FINAL;
    hs.handle = hh;
    if (ioctl(ctl, ELASTIC_IOC_HASH, &hs) != 0) die("HASH FINAL");
    printf("sha256:");
    for (uint32_t i = 0; i < hs.length; i++) printf("%02x", hs.data[i]);
    printf("\n");
    static struct elastic_attest at_req;
    memset(&at_req, 0, sizeof at_req);
    at_req.version = ELASTIC_ABI_VERSION;
    memset(at_req.report_data, 0xab, 64);
    if (ioctl(ctl, ELASTIC_IOC_ATTEST, &at_req) == 0)
        printf("attest platform=%u bytes=%u\n", at_req.platform, at_req.report_length);
    else if (errno == EOPNOTSUPP)
        printf("attest not available here\n");
    else
        die("ATTEST");
    return 0;
}
