"""Pure types of the data flow: inbound async actions and webhook envelopes, outbound
completion and webhook events, the generated webhook data Structs, samples.

Nothing here talks to Redis or HTTP; every other subpackage may import it.
"""
