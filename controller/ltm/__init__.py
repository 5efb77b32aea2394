"""The BIG-IP edge: iControl REST client, paths, replies, writes, tokens, deadlines, HA failover, AS3.

(Named for the module it drives, so it is never confused with the emulator in `controller.sim.bigip`.)"""
