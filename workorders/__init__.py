"""The closed loop (工單): every call becomes a work order that is dispatched,
supervised, called back for a survey and counted in the KPIs."""
