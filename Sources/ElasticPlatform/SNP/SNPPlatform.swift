import ElasticCrypto

/// SEV-SNP as a sealing and attestation platform: the guest device (`/dev/sev-guest`), or the
/// simulator (with a loud warning, and never where a real SNP guest device exists).
public final class SNPPlatform: SealingPlatform {
    public static let descriptor = PlatformDescriptor(slotCode: 3, name: "snp") { bytes in
        (try? SNPSealParameters(encoded: bytes).summary) ?? "unreadable parameters (\(bytes.count) bytes)"
    }
    public static let simulatorName = "snp-simulator"

    public let guest: SNPGuest
    /// The VMPL the guest runs at (0 unless under an SVSM).
    public let vmpl: UInt32
    /// The simulator, when this is one.
    public let simulator: SNPSimulator?
    public var descriptor: PlatformDescriptor { Self.descriptor }

    init(guest: SNPGuest, vmpl: UInt32, simulator: SNPSimulator?) {
        self.guest = guest
        self.vmpl = vmpl
        self.simulator = simulator
    }

    /// `platform`: nil or "snp" for the device, `simulatorName` for the simulator (which needs
    /// its state file).
    public static func open(
        platform: String?, simulatorState: String?, probe: PlatformProbe = PlatformProbe(),
        warn: (String) -> Void
    ) throws -> SNPPlatform {
        switch platform {
        case simulatorName:
            guard !probe.hasSEVGuestDevice else {
                throw SEVError.invalidRequest("refusing the SNP simulator: this machine has a real /dev/sev-guest")
            }
            guard let simulatorState else {
                throw SEVError.invalidRequest(
                    "the SNP simulator needs --simulator-state FILE (or -o simulator_state=FILE)")
            }
            warn(
                "WARNING: using the SEV-SNP SIMULATOR (\(simulatorState)): keys are NOT sealed by hardware; for tests and demos only"
            )
            let sim = try SNPSimulator.load(simulatorState)
            return SNPPlatform(guest: SNPGuest(transport: sim), vmpl: sim.state.currentVMPL, simulator: sim)
        case nil, descriptor.name:
            guard probe.hasSEVGuestDevice else {
                let here = probe.kind
                var msg = "SNP sealing needs an SEV-SNP guest with /dev/sev-guest; this is \(here.rawValue)."
                if here == .tdxGuest { msg += " TDX has no sealing key in mainline Linux;" }
                msg += " Key-slot kinds that work here: keyfile, passphrase."
                throw SEVError.invalidRequest(msg)
            }
            return SNPPlatform(
                guest: SNPGuest(transport: try LinuxSEVGuestDevice(), minimumInterval: 0.1), vmpl: probe.vmpl,
                simulator: nil)
        default:
            throw SEVError.invalidRequest("unknown platform \(platform!) (use \(descriptor.name) or \(simulatorName))")
        }
    }

    public func seal(_ choice: SealChoice) throws -> (parameters: [UInt8], secret: [UInt8]) {
        let root: SNPRootKey
        switch choice.rootKey ?? "vcek" {
        case "vcek": root = .vcek
        case "vlek": root = .vlek
        case "vmrk": root = .vmrk
        default: throw SEVError.invalidRequest("--root-key takes vcek, vlek or vmrk")
        }
        let params = try SNPSealing.parameters(guest: guest, vmpl: vmpl, root: root)
        return (params.encoded, try SNPSealing.derive(guest: guest, params))
    }

    public func unseal(_ parameters: [UInt8]) throws -> [UInt8] {
        try SNPSealing.derive(guest: guest, try SNPSealParameters(encoded: parameters))
    }

    public func resealed(_ parameters: [UInt8]) throws -> [UInt8]? {
        let old = try SNPSealParameters(encoded: parameters)
        // A slot sealed with the firmware's default root becomes explicit: the root it used here.
        let root =
            old.rootKey == .firmwareDefault
            ? try SNPSealing.resolvedDefaultRoot(guest: guest, vmpl: old.vmpl) : old.rootKey
        let fresh = try SNPSealing.parameters(
            guest: guest, vmpl: old.vmpl, root: root, fields: GuestFieldSelect(rawValue: old.fields))
        return fresh == old ? nil : fresh.encoded
    }

    /// Reports for the control file from this guest.
    public func attestation() -> SNPAttestationProvider {
        SNPAttestationProvider(
            guest: guest, vmpl: vmpl, simulated: simulator != nil,
            tsm: simulator == nil ? try? ConfigfsTSMDirectory() : nil)
    }
}
