import ElasticCrypto

/// Choosing MSG_KEY_REQ parameters for a store, deriving the key again at mount, and naming
/// what changed when the key no longer matches.
public enum SNPSealing {
    /// Defaults that keep a store usable and safe: VCEK root; measurement, policy and TCB mixed;
    /// TCB pinned to the platform's committed TCB (so a TCB rollback cannot open the store and a
    /// TCB upgrade does not silently change the key: `elastic slot reseal` moves it forward).
    public static let defaultFields: GuestFieldSelect = [.measurement, .guestPolicy, .tcbVersion]

    public static func parameters(
        guest: SNPGuest, vmpl: UInt32, root: SNPRootKey = .vcek, fields: GuestFieldSelect = defaultFields,
        tcb: UInt64? = nil
    ) throws -> SNPSealParameters {
        let report = try guest.report(reportData: Array(repeating: 0, count: 64), vmpl: vmpl)
        let pinned = tcb ?? report.committedTCB
        guard TCBVersion(raw: pinned).isAtMost(TCBVersion(raw: report.committedTCB)) else {
            throw SEVError.invalidRequest(
                "TCB \(TCBVersion(raw: pinned)) is above the committed TCB \(TCBVersion(raw: report.committedTCB))")
        }
        return SNPSealParameters(
            rootKey: UInt8(root.rawValue), fields: fields.rawValue, vmpl: vmpl, guestSVN: 0,
            tcbVersion: pinned, policy: report.policy, measurement: report.measurement)
    }

    public static func request(_ p: SNPSealParameters) -> SNPDerivedKeyRequest {
        SNPDerivedKeyRequest(
            rootKey: SNPRootKey(rawValue: UInt32(p.rootKey)) ?? .vcek, fields: GuestFieldSelect(rawValue: p.fields),
            vmpl: p.vmpl, guestSVN: p.guestSVN, tcbVersion: p.tcbVersion)
    }

    /// The slot secret for `p` on this VM. Before asking the firmware, compares this VM's report
    /// with what the slot recorded, so a refusal names the mismatch.
    public static func derive(guest: SNPGuest, _ p: SNPSealParameters) throws -> [UInt8] {
        let fields = GuestFieldSelect(rawValue: p.fields)
        let report = try guest.report(reportData: Array(repeating: 0, count: 64), vmpl: p.vmpl)
        if fields.contains(.measurement) && report.measurement != p.measurement {
            throw SEVError.invalidRequest(
                "launch measurement differs: sealed for \(Hex.encode(p.measurement.prefix(8)))…, this VM has \(Hex.encode(report.measurement.prefix(8)))…"
            )
        }
        if fields.contains(.guestPolicy) && report.policy != p.policy {
            throw SEVError.invalidRequest(
                "guest policy differs: sealed for 0x\(String(p.policy, radix: 16)), this VM has 0x\(String(report.policy, radix: 16))"
            )
        }
        if fields.contains(.tcbVersion) && !TCBVersion(raw: p.tcbVersion).isAtMost(TCBVersion(raw: report.committedTCB))
        {
            throw SEVError.invalidRequest(
                "TCB rollback: sealed for TCB \(TCBVersion(raw: p.tcbVersion)), the platform's committed TCB is \(TCBVersion(raw: report.committedTCB))"
            )
        }
        let key = try guest.derivedKey(request(p))
        return key.withUnsafeBytes { Array($0) }
    }
}
