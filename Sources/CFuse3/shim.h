#ifndef CFUSE3_SHIM_H
#define CFUSE3_SHIM_H
#define FUSE_USE_VERSION 314
#include <fuse_lowlevel.h>

/// FUSE_ARGS_INIT is a macro; build the struct here.
static inline struct fuse_args CFuse3_args_init(int argc, char **argv) {
    struct fuse_args a = FUSE_ARGS_INIT(argc, argv);
    return a;
}

/// Entry points wrapped here so a libfuse whose symbol versioning differs only changes this file.
static inline struct fuse_session *CFuse3_session_new(struct fuse_args *args, const struct fuse_lowlevel_ops *op, void *userdata) {
    return fuse_session_new(args, op, sizeof(*op), userdata);
}
#endif
