// swift-tools-version:6.0
import PackageDescription

let swiftSettings: [SwiftSetting] = [
    .enableUpcomingFeature("ExistentialAny")
]

let package = Package(
    name: "elastic",
    products: [
        .executable(name: "mount.elastic", targets: ["MountElastic"]),
        .executable(name: "elastic", targets: ["ElasticCLI"]),
    ],
    dependencies: [
        .package(url: "https://github.com/apple/swift-argument-parser", from: "1.5.0"),
        .package(url: "https://github.com/apple/swift-log", from: "1.16.0"),
        .package(url: "https://github.com/apple/swift-system", from: "1.4.0"),
    ],
    targets: [
        // C shims: libfuse3, OpenSSL 3, Linux (GNU-only) calls.
        .systemLibrary(name: "CFuse3", pkgConfig: "fuse3", providers: [.apt(["libfuse3-dev"])]),
        .systemLibrary(name: "COpenSSL", pkgConfig: "libcrypto", providers: [.apt(["libssl-dev"])]),
        .target(name: "CElasticLinux"),  // syscalls and GNU-only calls
        .target(name: "CElasticFUSEInit"),  // /dev/fuse: the request loop, and the KILLPRIV_V2 I/O hook
        .target(name: "CElasticSEV"),  // <linux/sev-guest.h>
        .target(name: "CElasticTDX"),  // <linux/tdx-guest.h>
        // A TPM 2.0 NV counter through tpm2-tss (ESAPI): the `tpm:` freshness witness.
        .target(
            name: "CElasticTPM",
            linkerSettings: [
                .linkedLibrary("tss2-esys"), .linkedLibrary("tss2-tctildr"), .linkedLibrary("tss2-rc"),
            ]),
        // The control-file ABI: include/elastic/elastic_ioctl.h, for the daemon, the CLI and C clients.
        .target(name: "CElasticControlABI"),
        // An OpenSSL 3 provider for keys whose signatures the control file makes.
        .target(name: "CElasticRemoteKey", linkerSettings: [.linkedLibrary("crypto")]),

        // Syscall and crypto wrappers.
        .target(
            name: "ElasticSystem",
            dependencies: ["CElasticLinux", .product(name: "SystemPackage", package: "swift-system")],
            swiftSettings: swiftSettings),
        .target(
            name: "ElasticCrypto",
            dependencies: ["COpenSSL"],
            swiftSettings: swiftSettings),

        // Confidential-computing platforms: detection, sealing and attestation protocols, with
        // SNP/ (the /dev/sev-guest transport, derived keys, reports, the firmware simulator behind
        // the same seam) and TDX/ inside. Knows nothing of the store format.
        .target(
            name: "ElasticPlatform",
            dependencies: ["ElasticCrypto", "ElasticSystem", "CElasticSEV", "CElasticTDX", "CElasticTPM"],
            swiftSettings: swiftSettings),

        // On-disk format: config, key slots, content and name encryption. Knows nothing of FUSE.
        .target(
            name: "ElasticFormat",
            dependencies: ["ElasticCrypto", "ElasticSystem"],
            swiftSettings: swiftSettings),

        // Control protocol, server side: the command table and its handlers (clock, crypto, key
        // store, attestation). No FUSE.
        .target(
            name: "ElasticControl",
            dependencies: ["CElasticControlABI", "ElasticCrypto", "ElasticSystem", "ElasticFormat", "ElasticPlatform"],
            swiftSettings: swiftSettings),
        // Control protocol, client side: speaks the ABI of elastic_ioctl.h to a mounted store.
        .target(
            name: "ElasticControlClient",
            dependencies: ["CElasticControlABI", "ElasticCrypto", "ElasticSystem"],
            swiftSettings: swiftSettings),

        // TLS: attested certificates (evidence that binds a key of the key store), their
        // verification, and TLS connections whose handshake signatures the control file makes.
        .target(
            name: "ElasticTLS",
            dependencies: [
                "COpenSSL", "CElasticRemoteKey", "ElasticCrypto", "ElasticControlClient", "ElasticPlatform",
            ],
            swiftSettings: swiftSettings),

        // FUSE frontend: the only layer that speaks errno to the kernel.
        .target(
            name: "ElasticFUSE",
            dependencies: [
                "CFuse3", "CElasticFUSEInit", "CElasticLinux", "ElasticFormat", "ElasticSystem", "ElasticCrypto",
                "ElasticControl",
                .product(name: "Logging", package: "swift-log"),
            ],
            swiftSettings: swiftSettings),

        // What both executables share: key sources and unlocking, platform choice, the control
        // dispatcher of a mount, exit codes.
        .target(
            name: "ElasticRuntime",
            dependencies: ["ElasticFormat", "ElasticPlatform", "ElasticControl", "ElasticCrypto", "ElasticSystem"],
            swiftSettings: swiftSettings),

        // Thin executables.
        .executableTarget(
            name: "MountElastic",
            dependencies: [
                "ElasticFUSE", "ElasticRuntime", "ElasticFormat", "ElasticSystem", "ElasticPlatform", "ElasticControl",
                .product(name: "ArgumentParser", package: "swift-argument-parser"),
                .product(name: "Logging", package: "swift-log"),
            ],
            swiftSettings: swiftSettings),
        .executableTarget(
            name: "ElasticCLI",
            dependencies: [
                "ElasticRuntime", "ElasticFormat", "ElasticCrypto", "ElasticSystem", "ElasticPlatform",
                "ElasticControlClient", "ElasticTLS",
                .product(name: "ArgumentParser", package: "swift-argument-parser"),
            ],
            swiftSettings: swiftSettings),

        .testTarget(
            name: "ElasticControlTests",
            dependencies: [
                "ElasticControl", "ElasticControlClient", "ElasticCrypto", "ElasticFormat", "ElasticSystem",
                "CElasticControlABI",
            ], swiftSettings: swiftSettings),
        .testTarget(name: "ElasticCryptoTests", dependencies: ["ElasticCrypto"], swiftSettings: swiftSettings),
        .testTarget(name: "ElasticTLSTests", dependencies: ["ElasticTLS"], swiftSettings: swiftSettings),
        .testTarget(
            name: "ElasticPlatformTests",
            dependencies: ["ElasticPlatform", "ElasticCrypto", "CElasticSEV", "CElasticTDX"],
            exclude: ["Fixtures"],
            swiftSettings: swiftSettings),
        .testTarget(
            name: "ElasticRuntimeTests", dependencies: ["ElasticRuntime", "ElasticPlatform", "ElasticFormat"],
            swiftSettings: swiftSettings),
        .testTarget(
            name: "ElasticFormatTests", dependencies: ["ElasticFormat", "ElasticCrypto", "ElasticSystem"],
            swiftSettings: swiftSettings),
        .testTarget(
            name: "ElasticIntegrationTests",
            dependencies: ["ElasticSystem", "ElasticPlatform", "ElasticFormat"],
            exclude: ["Scripts", "Fixtures"],
            swiftSettings: swiftSettings),
    ]
)
