"""Page families of the web console; each module exports ``router`` (see :mod:`zvonok.web.routing`)."""
