import Testing
import Hummingbird; import HummingbirdTesting
