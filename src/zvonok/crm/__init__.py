"""The CRM: a tenant's clients (people and companies), their phones, e-mails, custom fields and notes,
found by any part of a number or by words (:mod:`.search`), with every call of theirs on the timeline
(matched by number against the CDRs, so calls made before the client existed count too) and a screen
pop on the ringing employee's websocket (:mod:`.screenpop`)."""
