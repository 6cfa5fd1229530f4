"""The cdb application: the ``cdb`` command line and the service launcher, on top of the library."""
