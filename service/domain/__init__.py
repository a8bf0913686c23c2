"""Pure types of the data flow: inbound async actions, outbound completion events, samples.

Nothing here talks to Redis or HTTP; every other subpackage may import it.
"""
