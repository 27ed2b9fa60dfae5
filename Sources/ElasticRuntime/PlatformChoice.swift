import ElasticControl
import ElasticPlatform

/// Which platform seals and attests for a command or a mount: the one detected (nil name), or
/// one named with `--platform` / `-o platform=` (the SNP simulator, for tests and demos).
public struct PlatformChoice: Sendable {
    public var name: String?
    /// The simulator's state file.
    public var simulatorState: String?

    public init(name: String? = nil, simulatorState: String? = nil) {
        self.name = name
        self.simulatorState = simulatorState
    }

    /// Whether this names the simulator.
    public var isSimulator: Bool { name == SNPPlatform.simulatorName }

    /// The sealing platform (today SEV-SNP, the device or the simulator); `warn` hears about
    /// the simulator.
    public func openSealing(probe: PlatformProbe = PlatformProbe(), warn: (String) -> Void) throws
        -> any SealingPlatform
    {
        try SNPPlatform.open(platform: name, simulatorState: simulatorState, probe: probe, warn: warn)
    }

    /// Reports for the control file: the SEV-SNP device when present (or the simulator when
    /// chosen), the TDX device on a TDX guest; none on plain Linux.
    public func attestation(probe: PlatformProbe = PlatformProbe()) -> (any AttestationProvider)? {
        if name == nil && !probe.hasSEVGuestDevice && probe.hasTDXGuestDevice { return try? TDXAttestationProvider() }
        guard isSimulator || probe.hasSEVGuestDevice else { return nil }
        guard
            let snp = try? SNPPlatform.open(
                platform: name, simulatorState: simulatorState, probe: probe, warn: { _ in })
        else { return nil }
        return snp.attestation()
    }

    /// Where the control file's time comes from: Secure TSC as detected at mount (the clock
    /// source is checked again as readings are taken).
    public func timePlatform(probe: PlatformProbe = PlatformProbe()) -> TimePlatform {
        let detection = probe.secureTSC
        return TimePlatform(secureTSC: detection.enabled, evidence: detection.evidence)
    }
}
