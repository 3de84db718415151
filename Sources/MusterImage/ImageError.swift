/// What went wrong with an image, in one line a person can act on: the file or blob, what is
/// wrong with it, and what to do. `kind` is for code that reacts differently (a missing image is
/// reported at `check`, a corrupt blob also at unpack).
public struct ImageError: Error, Sendable, CustomStringConvertible, Equatable {
    public enum Kind: Sendable, Equatable {
        case missingImage, missingIndex, unknownTag, corruptBlob, missingBlob, otherPlatform
        case unsupportedMediaType, invalidImage, unsafeEntry, io
    }

    public var kind: Kind
    public var description: String

    public init(_ kind: Kind, _ description: String) {
        self.kind = kind
        self.description = description
    }
}
